"""Databricks Apps: materialize a model version into an Apps source directory, verify it,
run it locally as Apps would, deploy it, and check the auth of its declared resources.

``deploy`` and ``check_auth`` pull in the databricks-sdk; they are imported on first use so
``import mlflow_app_agent.apps`` stays light.
"""

from __future__ import annotations

from mlflow_app_agent._lazy import lazy_getattr
from mlflow_app_agent.apps.build.manifest import verify
from mlflow_app_agent.apps.build.materialize import materialize

# public function -> submodule defining it
_LAZY = {
    "deploy": "mlflow_app_agent.apps.workspace.deployment",
    "check_auth": "mlflow_app_agent.apps.workspace.auth_check",
}

__all__ = ["check_auth", "deploy", "materialize", "verify"]


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
