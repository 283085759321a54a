"""The whole path a new user takes: materialize a registered version, ``run-local`` it from
a fresh venv (a real ``uv sync --frozen`` from the package index, as Apps installs a uv-mode
app), talk to it through the local Apps proxy (invoke, SSE stream, the official openai
client) and see the forwarded user reach the agent; then the same for a plain-MLflow
ResponsesAgent, and the echo app in pip mode (a real ``pip install -r requirements.txt``)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlflow_app_agent.apps import materialize, verify
from mlflow_app_agent.apps.build.materialize import BuildOptions
from mlflow_app_agent.apps.local.installer import requirements_key

from .conftest import LoggedVersion

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INSTALL_TIMEOUT = 900.0


class RunLocal:
    """``mlflow-app-agent run-local`` as a user runs it, in its own process."""

    def __init__(self, app_dir: Path, cache: Path, user: str, *args: str) -> None:
        env = {**os.environ, "MLFLOW_APP_AGENT_CACHE_DIR": str(cache)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow_app_agent.cli", "run-local", str(app_dir),
             "--port", "0", "--as-user", user, *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout.put),
                         daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr.append),
                         daemon=True).start()

    @staticmethod
    def _read(stream: object, sink: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink(line.rstrip("\n"))  # type: ignore[operator]

    def wait_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stdout.get(timeout=1.0)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = re.search(r"App running at (http://\S+)", line)
            if match:
                return match.group(1)
        self.stop()
        pytest.fail("run-local did not come up:\n" + "\n".join(self.stderr[-40:]))

    @property
    def app_port(self) -> int:
        for line in self.stderr:
            match = re.search(r"DATABRICKS_APP_PORT=(\d+)", line)
            if match:
                return int(match.group(1))
        raise AssertionError("no DATABRICKS_APP_PORT in the output")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def sse_events(response: httpx.Response) -> list[object]:
    """The events of an SSE response (parsed by httpx-sse): JSON, and the final "[DONE]"."""
    from httpx_sse import EventSource

    return [sse.data if sse.data == "[DONE]" else json.loads(sse.data)
            for sse in EventSource(response).iter_sse()]


def stream_text(events: list[object]) -> str:
    return "".join(
        e["delta"] for e in events
        if isinstance(e, dict) and e.get("type") == "response.output_text.delta"
    )


def test_materialized_apps_run_from_a_fresh_venv(
    tracking_uri: str, echo_version: LoggedVersion, plain_version: LoggedVersion,
    tmp_path: Path,
) -> None:
    import openai

    cache = tmp_path / "fresh-cache"  # nothing cached: a real venv + pip install
    echo_dir = materialize(echo_version.uri, tmp_path / "echo-app")
    plain_dir = materialize(plain_version.uri, tmp_path / "plain-app")
    assert not (echo_dir / "requirements.txt").exists()

    app = RunLocal(echo_dir, cache, "ada@example.com")
    try:
        url = app.wait_url(INSTALL_TIMEOUT)
        log = "\n".join(app.stderr)
        assert "Creating a fresh venv" in log and "uv sync --frozen" in log
        assert "+ mlflow-app-agent==0.1.0 (from file:" in log
        assert "+ mlflow-skinny==" in log and "+ mlflow==" not in log
        assert "API_KEY comes from app resource" in log  # valueFrom entries are explained

        body = {"input": [{"role": "user", "content": "hello apps"}]}
        invoke = httpx.post(f"{url}/invocations", json=body, timeout=30)
        assert invoke.status_code == 200, invoke.text
        text = invoke.json()["output"][0]["content"][0]["text"]
        assert text == "hello apps (for ada@example.com)"

        with httpx.stream("POST", f"{url}/invocations", json={**body, "stream": True},
                          timeout=30) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = sse_events(response)
        assert events[-1] == "[DONE]"
        assert stream_text(events) == "hello apps (for ada@example.com)"

        client = openai.OpenAI(base_url=url, api_key="unused-locally")
        with client.responses.stream(model="agent", input="via openai") as stream:
            final = stream.get_final_response()
        assert final.output_text == "via openai (for ada@example.com)"

        info = httpx.get(f"{url}/agent/info", timeout=10).json()
        assert info["registered_model"] == {
            "name": echo_version.name, "version": echo_version.version}
        assert info["model_id"] == echo_version.model_id
        app_port = app.app_port
    finally:
        code = app.stop()
    assert code == 0
    assert not port_open(app_port)  # the app process went down with run-local
    assert verify(echo_dir) == []  # running it wrote nothing into the directory

    plain = RunLocal(plain_dir, cache, "grace@example.com")
    try:
        url = plain.wait_url(INSTALL_TIMEOUT)
        # both apps pin the same requirements; logged in the same second, their install
        # files are identical and run-local rightly reuses the echo app's venv
        same = requirements_key(plain_dir) == requirements_key(echo_dir)
        expected = "Reusing the venv for these requirements" if same else "uv sync --frozen"
        assert expected in "\n".join(plain.stderr)
        answer = httpx.post(f"{url}/invocations", json={
            "input": [{"role": "user", "content": "hi"}]}, timeout=30).json()
        assert answer["output"][0]["content"][0]["text"] == "plain: hi (user=grace@example.com)"
        with httpx.stream("POST", f"{url}/responses", json={
                "input": [{"role": "user", "content": "hi"}], "stream": True},
                timeout=30) as response:
            events = sse_events(response)
        assert "plain: hi (user=grace@example.com)" in stream_text(events)
    finally:
        assert plain.stop() == 0
    assert verify(plain_dir) == []


def test_pip_mode_app_installs_with_pip_and_serves_the_openai_client(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path,
) -> None:
    import openai

    app_dir = materialize(echo_version.uri, tmp_path / "echo-pip",
                          options=BuildOptions(installer="pip"))
    assert not (app_dir / "pyproject.toml").exists()
    app = RunLocal(app_dir, tmp_path / "fresh-cache", "ada@example.com")
    try:
        url = app.wait_url(INSTALL_TIMEOUT)
        log = "\n".join(app.stderr)
        assert "pip install -r requirements.txt" in log and "Successfully installed" in log
        client = openai.OpenAI(base_url=url, api_key="unused-locally")
        answer = client.responses.create(model="agent", input="pip mode")
        assert answer.output_text == "pip mode (for ada@example.com)"
    finally:
        assert app.stop() == 0
    assert verify(app_dir) == []


def test_extension_app_with_an_app_factory_runs_locally(
    tracking_uri: str, ext_version: LoggedVersion, tmp_path: Path,
) -> None:
    """materialize --app-factory + the agent's extensions (route using what the start-up
    hook opened, middleware, context hook, shutdown hook) installed by uv sync --frozen and
    started by the app.yaml command; run-local's SIGTERM runs the shutdown hook."""
    app_dir = materialize(ext_version.uri, tmp_path / "ext-app",
                          app_factory="ext_support:wrapping_factory")
    marker = tmp_path / "marker"  # outside the app dir: running it must change nothing there
    marker.mkdir()
    app = RunLocal(app_dir, tmp_path / "fresh-cache", "ana@example.com",
                   "--env", f"EXT_MARKER_DIR={marker}")
    try:
        url = app.wait_url(INSTALL_TIMEOUT)
        assert "uv sync --frozen" in "\n".join(app.stderr)
        assert httpx.get(f"{url}/from-factory", timeout=30).json() == {"from": "factory"}
        ledger = httpx.get(f"{url}/ledger", timeout=30)
        assert ledger.status_code == 200, ledger.text
        assert ledger.json() == {"hits": 1, "user": "ana@example.com", "tenant": None}
        answer = httpx.post(f"{url}/responses", timeout=30, headers={"x-tenant": "acme"},
                            json={"input": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-stamp"] == "ext"
        assert answer.json()["output"][0]["content"][0]["text"] == "hi (tenant acme)"
        boom = httpx.get(f"{url}/boom", timeout=30)
        assert boom.status_code == 500 and boom.json()["error"]["code"] == "agent_error"
        info = httpx.get(f"{url}/agent/info", timeout=30).json()
        assert info["registered_model"]["name"] == ext_version.name
        assert info["extensions"]["on_shutdown"] == ["close_ledger"]
        assert [e["event"] for e in _events(marker)] == ["opened"]
    finally:
        assert app.stop() == 0
    # run-local's SIGTERM reached the app: its shutdown hook ran, in the same process
    events = _events(marker)
    assert [e["event"] for e in events] == ["opened", "closed"], "\n".join(app.stderr[-30:])
    assert events[0]["pid"] == events[1]["pid"]
    assert not any("shutdown hook" in line for line in app.stderr)  # in time, no warning
    assert verify(app_dir) == []


def _events(marker: Path) -> list[dict[str, object]]:
    path = marker / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
