"""Property-based validation of agents against the ResponsesAgent contract.

``check_agent(target)`` runs hypothesis-driven properties against an :class:`Agent`, a
model URI, or a running server URL; ``responses_requests()`` / ``malformed_requests()`` are
the strategies behind it, for writing one's own properties.

Names are imported lazily: this package is imported by the pytest plugin in every pytest
run, so it must not pull in hypothesis or MLflow until something here is used.
"""

from __future__ import annotations

from mlflow_app_agent._lazy import lazy_getattr

_LAZY = {
    "responses_requests": "mlflow_app_agent.testing.strategies",
    "malformed_requests": "mlflow_app_agent.testing.malformed",
    "malformed_objects": "mlflow_app_agent.testing.malformed",
    "MalformedBody": "mlflow_app_agent.testing.malformed",
    "MalformedObject": "mlflow_app_agent.testing.malformed",
    "check_agent": "mlflow_app_agent.testing.properties",
    "CheckReport": "mlflow_app_agent.testing.properties",
    "PropertyResult": "mlflow_app_agent.testing.properties",
    "check_invoke": "mlflow_app_agent.testing.properties",
    "check_stream": "mlflow_app_agent.testing.properties",
    "check_malformed": "mlflow_app_agent.testing.properties",
    "Target": "mlflow_app_agent.testing.targets",
    "AgentTarget": "mlflow_app_agent.testing.targets",
    "ServerTarget": "mlflow_app_agent.testing.targets",
    "StreamResult": "mlflow_app_agent.testing.targets",
    "fuzz_server": "mlflow_app_agent.testing.fuzz",
    "resolve_target": "mlflow_app_agent.testing.targets",
    "ci_profile": "mlflow_app_agent.testing.profiles",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
