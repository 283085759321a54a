"""The flavor against a real `mlflow server` process over HTTP (a team's shared registry)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.types.responses import ResponsesAgentResponse

import mlflow_app_agent

pytestmark = pytest.mark.e2e
ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 'store.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail("mlflow server exited during start-up")
        time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("mlflow server did not become healthy in 90 s")
    yield url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_log_register_and_load_over_http(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    try:
        info = mlflow_app_agent.log_model(
            str(ECHO), registered_model_name="echo-http", git="auto",
            pip_requirements=["mlflow-app-agent", "mlflow-skinny"],
        )
        mlflow.MlflowClient().set_registered_model_alias("echo-http", "champion", "1")
        for uri in ("models:/echo-http/1", "models:/echo-http@champion"):
            model = mlflow.pyfunc.load_model(uri)
            out = model.predict({"input": [{"role": "user", "content": "over http"}]})
            ResponsesAgentResponse.model_validate(out)
            assert out["output"][0]["content"][0]["text"] == "over http"
        loaded = mlflow_app_agent.load_agent("models:/echo-http@champion")
        assert loaded.registered_version == "1" and loaded.model_id == info.model_id
        tags = mlflow.MlflowClient().get_logged_model(info.model_id).tags
        assert tags["mlflow.source.git.commit"] == loaded.git["commit"]
    finally:
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI_ORIGINAL", ""))
