"""The app factory: what to serve from arguments or ``MLFLOW_APP_AGENT_MODEL``, settings
given one way only, and ``/agent/info`` facts (in-process, Starlette's TestClient)."""

from __future__ import annotations

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
