"""Settings from keywords and env, the port rule, and the CLI's validation."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mlflow_app_agent.errors import ConfigError
from mlflow_app_agent.server.cli import resolve_port, serve_command
from mlflow_app_agent.server.config import ServerSettings


def test_env_then_overrides() -> None:
    env = {"MLFLOW_APP_AGENT_REQUEST_TIMEOUT": "12.5", "MLFLOW_APP_AGENT_TRACING": "off",
           "MLFLOW_APP_AGENT_MAX_BODY_BYTES": "100"}
    settings = ServerSettings.from_env(env, max_body_bytes=200)
    assert settings.request_timeout == 12.5 and settings.tracing is False
    assert settings.max_body_bytes == 200
    assert ServerSettings.from_env({}).trace_max_per_second == 5.0
    assert ServerSettings.from_env({}).trace_export == "auto"
    assert ServerSettings.from_env({"MLFLOW_APP_AGENT_TRACE_EXPORT": "thread"}).trace_export \
        == "thread"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MLFLOW_APP_AGENT_TRACING": "maybe"}, "MLFLOW_APP_AGENT_TRACING='maybe'"),
        ({"MLFLOW_APP_AGENT_MAX_CONCURRENCY": "lots"}, "not a valid int"),
        ({"MLFLOW_APP_AGENT_TRACE_SAMPLE_RATIO": "2"}, "between 0 and 1"),
        ({"MLFLOW_APP_AGENT_TRACE_EXPORT": "fork"}, "one of auto, process, thread"),
    ],
)
def test_bad_env_names_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        ServerSettings.from_env(env)


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="unknown server setting"):
        ServerSettings.from_env({}, colour="blue")


def test_port_rule() -> None:
    assert resolve_port(None, {}) == 8000
    assert resolve_port(9000, {}) == 9000
    assert resolve_port(9000, {"DATABRICKS_APP_PORT": "8123"}) == 8123
    with pytest.raises(click.BadParameter, match="DATABRICKS_APP_PORT"):
        resolve_port(None, {"DATABRICKS_APP_PORT": "eighty"})


def test_cli_needs_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_APP_AGENT_MODEL", raising=False)
    result = CliRunner().invoke(serve_command, [])
    assert result.exit_code == 2 and "MLFLOW_APP_AGENT_MODEL" in result.output


def test_cli_rejects_bad_env_before_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_APP_AGENT_REQUEST_TIMEOUT", "soon")
    result = CliRunner().invoke(serve_command, ["agent.py"])
    assert result.exit_code != 0
    assert "MLFLOW_APP_AGENT_REQUEST_TIMEOUT" in str(result.exception)
