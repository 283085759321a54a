"""``GET /agent/info``: what is being served, from where, by which versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from typing import Any

from mlflow_app_agent._version import __version__
from mlflow_app_agent.model.files import read_deploy_spec
from mlflow_app_agent.server.runtime import Runtime

_GIT_KEYS = ("commit", "branch", "dirty", "remote_url")


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def agent_info(runtime: Runtime, telemetry: dict[str, Any] | None = None) -> dict[str, Any]:
    served = runtime.served
    assert served is not None
    agent = served.agent
    git = {key: served.git.get(key) for key in _GIT_KEYS}
    git.update({k: v for k, v in served.git.items() if k not in git and _plain(v)})
    settings = runtime.settings
    return {
        "name": agent.name,
        "description": agent.description,
        "app_name": os.environ.get("DATABRICKS_APP_NAME"),
        "model_uri": served.model_uri,
        "registered_model": {
            "name": served.registered_name,
            "version": served.registered_version,
        },
        "model_id": served.model_id,
        "run_id": served.run_id,
        "flavor": served.flavor,
        "git": git,
        "interfaces": {
            "native": list(agent.native_interfaces),
            "served": ["invoke", "stream"],
            "endpoints": ["/invocations", "/responses"],
        },
        "versions": {
            "mlflow_app_agent": __version__,
            "mlflow": _version("mlflow", "mlflow-skinny"),
            "python": platform.python_version(),
        },
        "server": {
            "require_auth": settings.require_auth,
            "request_timeout": settings.request_timeout or None,
            "max_body_bytes": settings.max_body_bytes,
            "max_concurrency": settings.max_concurrency,
        },
        "tracing": runtime.tracer.stats(),
        "telemetry": telemetry,
        "extensions": agent.server_extensions.describe(),
        # what deploy sets on the app (declared with the model or at materialize time)
        "deploy": {"user_api_scopes": [], **read_deploy_spec(served.local_path).to_dict()},
        "instance": {
            "id": runtime.instance_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": runtime.started_at,
        },
    }


def _plain(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) or value is None
