from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

from . import agents
from .servers import serve


@pytest.fixture(scope="session")
def echo_agent():  # type: ignore[no-untyped-def]
    return agents.load_echo()


@pytest.fixture(scope="module")
def echo_server_url(echo_agent) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Our real server (create_app) serving the quickstart echo agent, tracing off."""
    from mlflow_app_agent.server import create_app

    with serve(create_app(echo_agent, tracing=False), ready_path="/ready") as url:
        yield url


PIP = ["mlflow-app-agent", "mlflow-skinny"]  # explicit: skips MLflow's requirement inference

BROKEN_AGENT_FILE = """
import mlflow
from mlflow_app_agent import Agent

agent = Agent("breaks-on-custom-inputs")


@agent.invoke_method
def invoke(request):
    if request.custom_inputs is not None:
        raise KeyError("session_id")
    text = request.input[-1].model_dump().get("content")
    return {"output": [{"type": "message", "id": "m1", "role": "assistant",
                        "content": [{"type": "output_text", "text": str(text)}]}]}


mlflow.models.set_model(agent)
"""


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """Point MLflow (env and client) at ``uri`` for the block, then restore both."""
    import mlflow

    old_env, old_uri = os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old_uri)
        if old_env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old_env


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A sqlite registry holding the quickstart echo agent and a broken agent, version 1
    each (logged once per session: logging costs seconds). Nothing stays pointed at it: use
    ``in_registry`` for in-process tests, pass ``tracking_uri`` to subprocesses."""
    import mlflow_app_agent

    from .agents import ECHO_PATH

    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    broken = root / "broken_agent.py"
    broken.write_text(BROKEN_AGENT_FILE)
    with _tracking(uri):
        for path, name in ((ECHO_PATH, "echo"), (broken, "broken")):
            mlflow_app_agent.log_model(
                str(path), registered_model_name=name, git="off", pip_requirements=PIP
            )
    return {"tracking_uri": uri, "echo": "models:/echo/1", "broken": "models:/broken/1"}


@pytest.fixture
def in_registry(registry: dict[str, str]) -> Iterator[dict[str, str]]:
    with _tracking(registry["tracking_uri"]):
        yield registry
