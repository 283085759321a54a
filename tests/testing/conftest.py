from __future__ import annotations

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
