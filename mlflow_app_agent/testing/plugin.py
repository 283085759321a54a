"""pytest plugin (entry point ``pytest11``), loaded into every pytest run: it only adds
options here and does nothing else unless ``--agent-model-uri`` / ``--agent-url`` is given."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlflow-app-agent", "agent contract validation (mlflow-app-agent)")
    group.addoption(
        "--agent-model-uri",
        default=None,
        metavar="URI",
        help="validate this agent (models:/name/version, models:/name@alias, runs:/..., "
        "or a local model / app dir) with auto-generated property tests",
    )
    group.addoption(
        "--agent-url",
        default=None,
        metavar="URL",
        help="validate the agent server running at this URL (e.g. http://127.0.0.1:8000)",
    )
