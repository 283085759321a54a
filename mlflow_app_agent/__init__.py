"""mlflow-app-agent: take an AI agent from a notebook to a running Databricks App.

Heavy modules (MLflow, FastAPI, the SDK) are imported lazily, on first use of a name.
"""

from __future__ import annotations

from mlflow_app_agent._lazy import lazy_getattr
from mlflow_app_agent._version import __version__
from mlflow_app_agent.authoring import Agent
from mlflow_app_agent.context import RequestContext, request_context, use_request_context
from mlflow_app_agent.errors import MlflowAppAgentError
from mlflow_app_agent.extensions import AgentExtensions

# public name -> module that defines it (imported on first access)
_LAZY = {
    "FLAVOR_NAME": "mlflow_app_agent.flavor",
    "save_model": "mlflow_app_agent.flavor",
    "log_model": "mlflow_app_agent.flavor",
    "load_model": "mlflow_app_agent.flavor",
    "load_agent": "mlflow_app_agent.model.load",
    "create_app": "mlflow_app_agent.server",
    "materialize": "mlflow_app_agent.apps",
    "verify": "mlflow_app_agent.apps",
    "deploy": "mlflow_app_agent.apps",
    "check_auth": "mlflow_app_agent.apps",
    "check_agent": "mlflow_app_agent.testing",
    "get_config": "mlflow_app_agent.agent_config",
    # pydantic builds a model per resource kind on import (~10 ms): serving an agent that
    # declares none never needs them
    "Resource": "mlflow_app_agent.resources",
}

__all__ = [
    "FLAVOR_NAME",
    "Agent",
    "AgentExtensions",
    "MlflowAppAgentError",
    "RequestContext",
    "Resource",
    "__version__",
    "check_agent",
    "check_auth",
    "create_app",
    "deploy",
    "get_config",
    "load_agent",
    "load_model",
    "log_model",
    "materialize",
    "request_context",
    "save_model",
    "use_request_context",
    "verify",
]


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
