"""The pytest plugin, as a user's project gets it: a separate pytest process that loads it
through the ``pytest11`` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

USER_PROPERTY = """
from hypothesis import HealthCheck, given, settings
from mlflow_app_agent.testing import responses_requests


# too_slow off: this machine may be busy; the point here is the plugin's fixtures
@settings(max_examples=10, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=responses_requests())
def test_answer_is_a_single_message(agent_target, request):
    response = agent_target.invoke(request)
    assert [item["type"] for item in response["output"]] == ["message"]
"""


def _pytest(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = subprocess.run(
        # langsmith's and schemathesis's plugins (dev extras) are unrelated to ours and cost
        # each nested pytest ~1-2 s of CPU to import, as in setup.cfg's addopts
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin",
         "-p", "no:schemathesis", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def test_plugin_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, mlflow_app_agent.testing.plugin; "
        "heavy = [m for m in ('mlflow', 'hypothesis', 'httpx', 'fastapi', 'starlette') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


def test_plugin_is_inert_without_its_options(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert True\n")
    (tmp_path / "test_own.py").write_text(USER_PROPERTY)
    code, out = _pytest(tmp_path, "-rs")
    assert code == 0, out
    assert "1 passed, 1 skipped" in out
    assert "no agent given: pass --agent-model-uri" in out
    assert "agent_contract" not in out
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.e2e
def test_model_uri_option_adds_the_contract_tests(tmp_path: Path, registry: dict) -> None:  # type: ignore[type-arg]
    (tmp_path / "test_own.py").write_text(USER_PROPERTY)
    code, out = _pytest(
        tmp_path, "-v", "--agent-model-uri", registry["echo"], "--agent-max-examples", "10",
        env={"MLFLOW_TRACKING_URI": registry["tracking_uri"]},
    )  # fmt: skip
    assert code == 0, out
    for prop in ("invoke", "stream", "consistency", "malformed"):
        assert f"agent_contract[{prop}] PASSED" in out
    assert "test_answer_is_a_single_message PASSED" in out
    assert "5 passed" in out


@pytest.mark.e2e
def test_failing_property_shows_the_counterexample(tmp_path: Path, registry: dict) -> None:  # type: ignore[type-arg]
    code, out = _pytest(
        tmp_path, "--agent-model-uri", registry["broken"], "--agent-max-examples", "25",
        "--agent-nondeterministic", "-rs", "-k", "invoke or consistency",
        env={"MLFLOW_TRACKING_URI": registry["tracking_uri"]},
    )  # fmt: skip
    assert code == 1, out
    assert "1 failed, 1 skipped" in out
    assert "agent contract: invoke" in out
    assert "invoke raised KeyError: 'session_id'" in out
    assert '"custom_inputs": {}' in out
    assert "declared non-deterministic" in out
    assert "Traceback" not in out


def test_a_bad_model_uri_fails_each_contract_test_with_the_load_error(tmp_path: Path) -> None:
    code, out = _pytest(tmp_path, f"--agent-model-uri={tmp_path / 'missing'}", "-k", "invoke")
    assert code == 1, out
    assert "is not a model URI" in out and "Traceback" not in out
