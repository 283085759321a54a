"""check_agent and the validate CLI on registry versions (a real sqlite registry)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlflow_app_agent.cli import main
from mlflow_app_agent.errors import ValidationFailure
from mlflow_app_agent.testing import check_agent


def test_quickstart_echo_version_passes(in_registry: dict[str, str]) -> None:
    report = check_agent(in_registry["echo"], max_examples=25)
    assert report.ok, report.format()
    assert report.target == "models:/echo/1 (echo version 1)"


def test_broken_version_fails_with_the_request_that_breaks_it(in_registry: dict[str, str]) -> None:
    with pytest.raises(ValidationFailure) as info:
        check_agent(in_registry["broken"], max_examples=25, properties=["invoke"])
    result = info.value.report.failures[0]  # type: ignore[attr-defined]
    assert result.problem == "invoke raised KeyError: 'session_id'"
    assert result.counterexample["custom_inputs"] == {}


def test_validate_cli_passes_the_echo_version(in_registry: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["validate", in_registry["echo"], "--max-examples", "15"])
    assert result.exit_code == 0, result.output
    assert "OK: models:/echo/1 (echo version 1)" in result.output
    assert result.output.count("PASS") == 4


def test_validate_cli_exits_1_with_a_readable_counterexample(in_registry: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["validate", in_registry["broken"], "--max-examples", "25", "--no-deterministic"]
    )
    assert result.exit_code == 1, result.output
    out = result.output
    assert "FAIL  invoke" in out and "minimal counterexample:" in out
    assert "invoke raised KeyError: 'session_id'" in out
    assert "SKIP  consistency" in out
    # The counterexample is printed as JSON one can paste into a request.
    block = out.split("minimal counterexample:\n", 1)[1].split("      what broke:", 1)[0]
    assert json.loads(block)["custom_inputs"] == {}


def test_validate_cli_exits_2_on_a_missing_model(in_registry: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["validate", "models:/nope/1"])
    assert result.exit_code == 2
    assert "Error: cannot load models:/nope/1" in result.output
    assert "Traceback" not in result.output


def test_validate_cli_exits_2_on_an_unreachable_server() -> None:
    result = CliRunner().invoke(main, ["validate", "http://127.0.0.1:9", "--timeout", "2"])
    assert result.exit_code == 2
    assert "ConnectError" in result.output


def test_validate_cli_names_the_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec",
        lambda name, *a: None if name == "hypothesis_jsonschema" else real(name, *a),
    )  # fmt: skip
    result = CliRunner().invoke(main, ["validate", "models:/any/1"])
    assert result.exit_code == 2
    assert "pip install 'mlflow-app-agent[testing]'" in result.output


def test_plain_mlflow_responses_agent_version_passes(in_registry: dict[str, str]) -> None:
    """A ResponsesAgent logged with plain ``mlflow.pyfunc.log_model`` (python_function)."""
    import mlflow

    from . import agents
    from .conftest import PIP

    mlflow.pyfunc.log_model(
        name="agent", python_model=agents.responses_agent_echo(), pip_requirements=PIP,
        registered_model_name="plain-responses-agent",
    )  # fmt: skip
    report = check_agent("models:/plain-responses-agent/1", max_examples=15)
    assert report.ok, report.format()
    assert report.target.endswith("(plain-responses-agent version 1)")
