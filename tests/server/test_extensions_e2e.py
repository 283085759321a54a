"""A template-like agent with extensions, logged to the sqlite registry and served by real
uvicorn processes: its route answers with the resource its start-up hook opened, its
middleware stamps agent responses, SIGTERM runs its shutdown hook; --app-factory too."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

EXT = Path(__file__).parent / "ext_agent"
pytestmark = pytest.mark.e2e


@pytest.fixture
def ext_version(tracking_uri: str, unique_name: str) -> str:
    import mlflow_app_agent

    info = mlflow_app_agent.log_model(
        str(EXT / "agent.py"), name="agent", registered_model_name=unique_name,
        code_paths=[str(EXT / "ext_support.py")], pip_requirements=["mlflow-app-agent"],
        git="off",
    )
    return f"models:/{unique_name}/{info.registered_model_version}"


def _events(marker: Path) -> list[dict[str, Any]]:
    path = marker / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_served_extensions_and_shutdown_hook(serve: Any, ext_version: str, tracking_uri: str,
                                             tmp_path: Path) -> None:
    from openai import OpenAI

    marker = tmp_path / "marker"
    marker.mkdir()
    server = serve(ext_version, env={"MLFLOW_TRACKING_URI": tracking_uri,
                                     "EXT_MARKER_DIR": str(marker)})
    first = httpx.get(server.url + "/ledger", headers={"x-forwarded-email": "ana@example.com"})
    assert first.status_code == 200, first.text
    assert first.json() == {"hits": 1, "user": "ana@example.com", "tenant": None}
    assert httpx.post(server.url + "/ledger").json()["hits"] == 2
    answer = httpx.post(server.url + "/responses", headers={"x-tenant": "acme"},
                        json={"input": [{"role": "user", "content": "hello"}]})
    assert answer.headers["x-stamp"] == "ext"
    assert answer.json()["output"][0]["content"][0]["text"] == "hello (tenant acme)"
    client = OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    assert client.responses.create(model="m", input="plain").output_text == "plain"
    boom = httpx.get(server.url + "/boom")
    assert boom.status_code == 500 and boom.json()["error"]["code"] == "agent_error"
    info = httpx.get(server.url + "/agent/info").json()["extensions"]
    assert {r["path"] for r in info["routes"]} == {"/ledger", "/boom", "/public"}
    assert info["middleware"] == ["StampHeader"]
    assert info["on_startup"] == ["open_ledger"] and info["on_shutdown"] == ["close_ledger"]

    log = server.stop()  # SIGTERM
    events = _events(marker)
    assert [e["event"] for e in events] == ["opened", "closed"], log
    assert events[0]["pid"] == events[1]["pid"] == server.proc.pid
    assert "shutdown hook" not in log  # it ran in time, without a warning


def test_app_factory_from_the_models_code_paths(serve: Any, ext_version: str,
                                                tracking_uri: str, tmp_path: Path) -> None:
    server = serve(ext_version, "--app-factory", "ext_support:wrapping_factory",
                   env={"MLFLOW_TRACKING_URI": tracking_uri, "EXT_MARKER_DIR": str(tmp_path)})
    assert httpx.get(server.url + "/from-factory").json() == {"from": "factory"}
    assert httpx.get(server.url + "/ledger").json()["hits"] == 1


def test_app_factory_that_returns_no_app_is_one_error_line(
        serve: Any, ext_version: str, tracking_uri: str, tmp_path: Path) -> None:
    server = serve(ext_version, "--app-factory", "ext_support:broken_factory",
                   env={"MLFLOW_TRACKING_URI": tracking_uri, "EXT_MARKER_DIR": str(tmp_path)},
                   wait=False)
    assert server.proc.wait(timeout=120) != 0
    log = server.log.read_text()
    assert ("Error: --app-factory ext_support:broken_factory returned dict, not an ASGI app"
            in log), log
    assert "Traceback" not in log


@pytest.mark.parametrize(("mode", "message"), [
    ("raise", "start-up hook 'open_ledger' failed: RuntimeError: the ledger database is "
              "unreachable"),
    ("hang", "did not finish within its timeout"),
])
def test_failing_startup_hook_leaves_ready_503(serve: Any, ext_version: str, tracking_uri: str,
                                                tmp_path: Path, mode: str, message: str) -> None:
    if mode == "hang":
        pytest.skip("the hook's 60 s default timeout is covered in-process "
                    "(test_a_hanging_startup_hook_fails_after_its_timeout)")
    server = serve(ext_version, env={"MLFLOW_TRACKING_URI": tracking_uri,
                                     "EXT_MARKER_DIR": str(tmp_path),
                                     "EXT_FAIL_STARTUP": mode}, wait=False)
    deadline = time.monotonic() + 90
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(server.url + "/ready", timeout=2)
            body = resp.json()
            if "failed" in json.dumps(body):
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    assert resp.status_code == 503 and message in body["error"]["message"], body
    assert httpx.get(server.url + "/ledger").status_code == 404
    assert httpx.get(server.url + "/health").status_code == 200
