"""Databricks Apps: materialize a model version into an Apps source directory, verify it,
run it locally as Apps would, deploy it, and check the auth of its declared resources.

``deploy`` and ``check_auth`` pull in the databricks-sdk; they are imported on first use so
``import mlflow_app_agent.apps`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from mlflow_app_agent.apps.manifest import verify
from mlflow_app_agent.apps.materialize import materialize

# public function -> submodule defining it
_LAZY = {
    "deploy": "mlflow_app_agent.apps.deployment",
    "check_auth": "mlflow_app_agent.apps.auth_check",
}

__all__ = ["check_auth", "deploy", "materialize", "verify"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlflow_app_agent.apps' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
