"""The bundled agent server: ``create_app(agent_or_model_uri) -> FastAPI``.

Routes: ``POST /invocations`` and ``POST /responses`` (JSON or SSE), ``GET /health``,
``/ping``, ``/ready`` and ``/agent/info``. See ``docs/server.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow_app_agent.server.app import create_app
    from mlflow_app_agent.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is imported only when an app is built, not when the package is imported.
    if name == "create_app":
        from mlflow_app_agent.server.app import create_app

        return create_app
    if name == "ServerSettings":
        from mlflow_app_agent.server.settings import ServerSettings

        return ServerSettings
    raise AttributeError(f"module 'mlflow_app_agent.server' has no attribute {name!r}")
