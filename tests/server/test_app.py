"""The app factory: what to serve from arguments or ``MLFLOW_APP_AGENT_MODEL``, settings
given one way only, and ``/agent/info`` facts (in-process, Starlette's TestClient)."""

from __future__ import annotations

import asyncio
import contextvars
import importlib.metadata
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mlflow_app_agent.errors import ConfigError
from mlflow_app_agent.server import ServerSettings, create_app
from mlflow_app_agent.server.app import app_from_env
from mlflow_app_agent.server.info import _version

from . import agents

MSG = {"input": [{"role": "user", "content": "from the env"}]}


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Locations load in a worker thread at start-up: /ready is 503 until then."""
    deadline = time.monotonic() + timeout
    while (resp := client.get("/ready")).status_code != 200:
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.02)


def test_no_agent_and_no_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_APP_AGENT_MODEL", raising=False)
    with pytest.raises(ConfigError, match="no agent to serve: .*MLFLOW_APP_AGENT_MODEL"):
        create_app()
    monkeypatch.setenv("MLFLOW_APP_AGENT_MODEL", "")
    with pytest.raises(ConfigError, match="MLFLOW_APP_AGENT_MODEL"):
        app_from_env()


def test_the_factory_serves_the_env_model_with_env_settings(
    monkeypatch: pytest.MonkeyPatch, agents_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_APP_AGENT_MODEL", f"{agents_path}:echo")
    monkeypatch.setenv("MLFLOW_APP_AGENT_TRACING", "false")
    monkeypatch.setenv("MLFLOW_APP_AGENT_MAX_BODY_BYTES", "2048")
    with TestClient(app_from_env(), raise_server_exceptions=False) as client:
        wait_ready(client)
        resp = client.post("/invocations", json=MSG)
        assert resp.status_code == 200
        assert resp.json()["output"][0]["content"][0]["text"] == "from the env"
        info = client.get("/agent/info").json()
        assert info["name"] == "echo" and info["server"]["max_body_bytes"] == 2048
        too_big = client.post("/invocations", json={"input": [
            {"role": "user", "content": "x" * 4096}]})
        assert too_big.status_code == 413


def test_settings_and_overrides_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="either settings= or individual setting overrides"):
        create_app(agents.echo, settings=ServerSettings(tracing=False), request_timeout=5)
    with pytest.raises(ConfigError, match="unknown server setting.*colour"):
        create_app(agents.echo, colour="blue")


def test_explicit_settings_reach_agent_info() -> None:
    settings = ServerSettings(tracing=False, require_auth=True, request_timeout=0,
                              max_concurrency=3)
    with TestClient(create_app(agents.echo, settings=settings)) as client:
        info = client.get("/agent/info").json()
    assert info["server"] == {"require_auth": True, "request_timeout": None,
                              "max_body_bytes": settings.max_body_bytes, "max_concurrency": 3}
    assert info["interfaces"]["native"] == ["invoke", "stream"]


def test_version_lookup_falls_back_to_the_next_distribution() -> None:
    assert _version("no-such-distribution-xyz", "fastapi") == importlib.metadata.version(
        "fastapi")
    assert _version("no-such-distribution-xyz") is None


def test_info_waits_for_the_model_like_ready(tmp_path: Path) -> None:
    app = create_app(str(tmp_path / "missing.py"), tracing=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while "missing.py" not in (resp := client.get("/agent/info")).text:
            assert time.monotonic() < deadline, resp.text
            time.sleep(0.02)
        assert resp.status_code == 503
        err = resp.json()["error"]
        assert err["code"] == "model_load_error" and "does not exist" in err["message"]


def test_a_response_that_is_not_json_is_a_500_not_a_crash() -> None:
    from mlflow_app_agent import Agent

    agent = Agent("sets")

    @agent.invoke_method
    def invoke(request: object) -> dict[str, object]:
        return {"output": [agents._message("ok")], "custom_outputs": {"tags": {"a", "b"}}}

    with TestClient(create_app(agent, tracing=False), raise_server_exceptions=False) as client:
        resp = client.post("/invocations", json=MSG)
    assert resp.status_code == 500
    err = resp.json()["error"]
    assert err["code"] == "agent_error"
    assert err["message"].startswith("the agent returned a response that is not JSON")
    assert "Traceback" not in resp.text


def test_agent_info_shows_the_instance_and_the_deploy_spec() -> None:
    import os
    import socket

    with TestClient(create_app(agents.echo, settings=ServerSettings(tracing=False))) as client:
        first = client.get("/agent/info").json()
        second = client.get("/agent/info").json()
    assert first["instance"]["id"] == second["instance"]["id"]  # one per server process
    assert first["instance"]["hostname"] == socket.gethostname()
    assert first["instance"]["pid"] == os.getpid()
    assert first["deploy"] == {"user_api_scopes": []}  # nothing declared for a plain agent
    with TestClient(create_app(agents.echo, settings=ServerSettings(tracing=False))) as other:
        assert other.get("/agent/info").json()["instance"]["id"] != first["instance"]["id"]


_LEAKED: contextvars.ContextVar[str] = contextvars.ContextVar("leaked_from_an_earlier_request")


def test_a_request_never_sees_variables_set_after_the_server_started() -> None:
    """A request that inherits the server's own context runs in place; one whose inherited
    context carries a variable set since (what an earlier request on a keep-alive connection
    can leave uvicorn's read callback holding) runs in a fresh, empty context."""
    from mlflow_app_agent import Agent
    from mlflow_app_agent.server.app import AgentApp

    seen: list[str | None] = []
    probe = Agent("probe")

    @probe.invoke_method
    async def answer(request):  # type: ignore[no-untyped-def]
        seen.append(_LEAKED.get(None))
        return {"output": [{"type": "message", "id": "m", "role": "assistant",
                            "content": [{"type": "output_text", "text": "ok"}]}]}

    app = create_app(probe, tracing=False, metrics=False)
    assert isinstance(app, AgentApp)
    body = b'{"input": [{"role": "user", "content": "hi"}]}'
    scope = {"type": "http", "method": "POST", "path": "/invocations", "root_path": "",
             "query_string": b"", "headers": [(b"content-type", b"application/json")]}

    async def call() -> tuple[int, bool]:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        clean = app._inherits_clean_context()
        await app(dict(scope), receive, send)
        return sent[0]["status"], clean

    async def main() -> list[tuple[int, bool]]:
        base = contextvars.copy_context()
        started, stop = asyncio.Event(), asyncio.Event()

        async def lifespan() -> None:
            async with app.router.lifespan_context(app):
                started.set()
                await stop.wait()

        life = asyncio.create_task(lifespan(), context=base.copy())
        await started.wait()
        loop = asyncio.get_running_loop()
        results = [await loop.create_task(call(), context=base.copy())]
        dirty = base.copy()
        dirty.run(_LEAKED.set, "user-a's span")
        results.append(await loop.create_task(call(), context=dirty))
        stop.set()
        await life
        return results

    results = asyncio.run(main())
    assert results == [(200, True), (200, False)]
    assert seen == [None, None]
