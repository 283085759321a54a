"""Fixtures for materialize / verify / run-local tests: models logged once per session
into the shared sqlite store (logging costs seconds), and a session wheel/venv cache."""

from __future__ import annotations

import importlib.metadata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ECHO_AGENT = ROOT / "examples" / "echo" / "agent.py"
PLAIN_AGENT = Path(__file__).resolve().parent / "plain_agent.py"


def model_requirements() -> list[str]:
    """What MLflow infers for these agents, given explicitly (inference costs ~2 s)."""
    return [f"{p}=={importlib.metadata.version(p)}" for p in ("mlflow", "cloudpickle", "pandas")]


@dataclass(frozen=True)
class LoggedVersion:
    name: str
    version: str
    model_id: str
    run_id: str | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@pytest.fixture(scope="session")
def apps_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow-app-agent-cache")


@pytest.fixture(autouse=True)
def _cache_env(apps_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # wheel and venv caches per test session, never the user's
    monkeypatch.setenv("MLFLOW_APP_AGENT_CACHE_DIR", str(apps_cache))


def _log(uri: str, name: str, log: Callable[[], Any]) -> LoggedVersion:
    import mlflow

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        info = log()
    return LoggedVersion(name, str(info.registered_model_version), info.model_id, info.run_id)


@pytest.fixture(scope="session")
def echo_version(_session_tracking_uri: str) -> LoggedVersion:
    """The echo example logged with our flavor, a declared experiment and endpoint."""
    import mlflow_app_agent

    name = f"echo-{uuid.uuid4().hex[:6]}"
    return _log(_session_tracking_uri, name, lambda: mlflow_app_agent.log_model(
        str(ECHO_AGENT), name="agent", registered_model_name=name,
        pip_requirements=model_requirements(),
        resources=[
            {"kind": "experiment", "experiment_id": "1234"},
            {"kind": "serving_endpoint", "endpoint_name": "my-llm", "env": "LLM_ENDPOINT"},
            {"kind": "secret", "scope": "team", "key": "api-key", "env": "API_KEY"},
        ],
    ))


@pytest.fixture(scope="session")
def plain_version(_session_tracking_uri: str) -> LoggedVersion:
    """A ResponsesAgent logged with plain ``mlflow.pyfunc.log_model`` (no toolkit flavor)."""
    import mlflow

    name = f"plain-{uuid.uuid4().hex[:6]}"
    return _log(_session_tracking_uri, name, lambda: mlflow.pyfunc.log_model(
        name="agent", python_model=str(PLAIN_AGENT), registered_model_name=name,
        pip_requirements=model_requirements(),
    ))


EXT_AGENT_DIR = ROOT / "tests" / "server" / "ext_agent"


@pytest.fixture(scope="session")
def ext_version(_session_tracking_uri: str) -> LoggedVersion:
    """The extension agent (routes, middleware, hooks) with ext_support.py in code_paths:
    what materialize --app-factory ext_support:wrapping_factory needs."""
    import mlflow_app_agent

    name = f"ext-{uuid.uuid4().hex[:6]}"
    return _log(_session_tracking_uri, name, lambda: mlflow_app_agent.log_model(
        str(EXT_AGENT_DIR / "agent.py"), name="agent", registered_model_name=name,
        code_paths=[str(EXT_AGENT_DIR / "ext_support.py")],
        pip_requirements=model_requirements(), git="off",
    ))
