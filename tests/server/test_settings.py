"""Settings from keywords and env, the port rule, and the CLI's validation."""

from __future__ import annotations

from pathlib import Path

import click
import pydantic
import pytest
from click.testing import CliRunner

from mlflow_app_agent.errors import ConfigError
from mlflow_app_agent.server.cli import resolve_port, serve_command
from mlflow_app_agent.server.settings import ServerSettings


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


def test_errors_name_the_accepted_values() -> None:
    with pytest.raises(ConfigError, match=r"MLFLOW_APP_AGENT_TRACING='maybe' is not a valid "
                                          r"bool \(use one of 1, true, yes, on or 0, false"):
        ServerSettings.from_env({"MLFLOW_APP_AGENT_TRACING": "maybe"})
    with pytest.raises(ConfigError, match=r"^max_concurrency='lots' is not a valid int"):
        ServerSettings(max_concurrency="lots")  # type: ignore[arg-type]
    # every bad variable at once, each named
    with pytest.raises(ConfigError, match=r"REQUEST_TIMEOUT='soon'.*TRACE_SAMPLE_RATIO='2'"):
        ServerSettings.from_env({"MLFLOW_APP_AGENT_REQUEST_TIMEOUT": "soon",
                                 "MLFLOW_APP_AGENT_TRACE_SAMPLE_RATIO": "2"})


def test_the_constructor_reads_the_environment_under_its_keywords(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_APP_AGENT_MAX_BODY_BYTES", "7")
    assert ServerSettings().max_body_bytes == 7
    assert ServerSettings(max_body_bytes=9).max_body_bytes == 9
    assert ServerSettings.from_env({}).max_body_bytes == 4 * 1024 * 1024  # only the mapping
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        ServerSettings().tracing = False  # type: ignore[misc]


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
    # One line naming the variable, not a ConfigError traceback.
    assert result.exit_code == 2, result.output
    assert "MLFLOW_APP_AGENT_REQUEST_TIMEOUT='soon' is not a valid float" in result.output
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("location", ["./no-such-dir", "no_such_agent.py",
                                      "no_such_agents.py:bot"])
def test_cli_rejects_a_missing_local_path_before_binding(
        location: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(serve_command, [location])
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output and location.split(":")[0] in result.output
    assert isinstance(result.exception, SystemExit)


def test_cli_leaves_uris_to_the_loader() -> None:
    from mlflow_app_agent.server.cli import location_problem

    for uri in ("models:/echo/1", "models:/echo@champion", "runs:/abc/agent",
                "models:/m-123", "dbfs:/x", "s3://bucket/model"):
        assert location_problem(uri) is None
    assert location_problem("nope.py:bot") == "agent file 'nope.py' does not exist"


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("max_concurrency", 0, "max_concurrency must be >= 1"),
        ("request_timeout", -1.0, "request_timeout must be >= 0"),
        ("max_body_bytes", 0, "max_body_bytes must be >= 1"),
        ("trace_sample_ratio", -0.1, "between 0 and 1"),
        ("trace_max_per_second", -5.0, "trace_max_per_second must be >= 0"),
        ("trace_export", "kafka", "trace_export must be one of auto, process, thread"),
    ],
)
def test_out_of_range_settings_name_the_field(field: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ServerSettings(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=words):  # the same rule for the env variable
        ServerSettings.from_env({f"MLFLOW_APP_AGENT_{field.upper()}": str(value)})


def test_env_values_are_parsed_by_type() -> None:
    settings = ServerSettings.from_env({
        "MLFLOW_APP_AGENT_REQUIRE_AUTH": " Yes ",
        "MLFLOW_APP_AGENT_MAX_CONCURRENCY": "8",
        "MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND": "0",
        "MLFLOW_APP_AGENT_TRACE_EXPORT": "thread",
        "MLFLOW_APP_AGENT_TRACING": "",  # empty means off, as an unset flag in app.yaml
    })
    assert settings.require_auth is True and settings.max_concurrency == 8
    assert settings.trace_max_per_second == 0.0 and settings.trace_export == "thread"
    assert settings.tracing is False
    with pytest.raises(ConfigError, match=r"MLFLOW_APP_AGENT_REQUEST_TIMEOUT='1 min' is not a "
                                          r"valid float"):
        ServerSettings.from_env({"MLFLOW_APP_AGENT_REQUEST_TIMEOUT": "1 min"})
    # None overrides mean "not given" (CLI options left unset), not "set to None"
    assert ServerSettings.from_env({}, request_timeout=None).request_timeout == 300.0


def test_the_package_exports_its_two_names_lazily() -> None:
    import mlflow_app_agent.server as server
    from mlflow_app_agent.server.app import create_app

    assert server.ServerSettings is ServerSettings and server.create_app is create_app
    assert sorted(server.__all__) == ["ServerSettings", "create_app"]
    with pytest.raises(AttributeError, match="has no attribute 'serve_forever'"):
        server.serve_forever  # noqa: B018


def test_python_dash_m_serve_accepts_dash_h_like_the_cli() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "mlflow_app_agent.serve", "-h"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: python -m mlflow_app_agent.serve")


def test_default_shutdown_fits_inside_the_apps_sigkill_window() -> None:
    # Databricks Apps sends SIGKILL 15 s after SIGTERM (see APPS.md).
    from mlflow_app_agent.server.app import _CUT_GRACE
    from mlflow_app_agent.server.cli import GRACEFUL_SHUTDOWN_SECONDS

    worst = GRACEFUL_SHUTDOWN_SECONDS + _CUT_GRACE + ServerSettings().trace_flush_timeout
    assert worst < 15
