"""Declaring server extensions on an agent: what is accepted, what is refused (and when)."""

from __future__ import annotations

from typing import Any

import pytest

from mlflow_app_agent import Agent, AgentExtensions
from mlflow_app_agent.authoring import as_agent
from mlflow_app_agent.errors import AgentDefinitionError
from mlflow_app_agent.extensions import CONTRACT_PATHS, RouteSpec, is_contract_path


def _agent() -> Agent:
    agent = Agent("x")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": []}

    return agent


@pytest.mark.parametrize("path", [*CONTRACT_PATHS, "/invocations/", "/agent/extra",
                                  "/static/app.js", "/ui", "/_internal", "/{anything}"])
def test_contract_routes_cannot_be_replaced_or_shadowed(path: str) -> None:
    agent = _agent()
    with pytest.raises(AgentDefinitionError, match="shadow a route the server owns"):
        agent.route(path)(lambda: None)
    assert is_contract_path(path)


@pytest.mark.parametrize("path", ["/feedback-export", "/tenants/{tenant}", "/v2/admin"])
def test_other_paths_are_accepted(path: str) -> None:
    agent = _agent()
    agent.route(path, methods=["get", "POST"])(lambda: None)
    assert agent.server_extensions.routes[0].methods == ("GET", "POST")
    assert not is_contract_path(path)


def test_a_contract_route_is_refused_at_log_time_too(tmp_path: Any) -> None:
    """Specs added behind the decorator's back are caught when the agent is checked, which
    log_model does before anything is written."""
    import mlflow_app_agent

    agent = _agent()
    agent.server_extensions.routes.append(
        RouteSpec("/invocations", lambda: None, ("POST",), "steal"))
    with pytest.raises(AgentDefinitionError, match="/invocations"):
        mlflow_app_agent.save_model(agent, tmp_path / "m", git="off",
                                    pip_requirements=["mlflow-app-agent"])
    assert not (tmp_path / "m").exists()


def test_bad_declarations_name_what_is_wrong() -> None:
    agent = _agent()
    with pytest.raises(AgentDefinitionError, match="must start with '/'"):
        agent.route("ledger")(lambda: None)
    with pytest.raises(AgentDefinitionError, match="methods must be among"):
        agent.route("/x", methods=["FETCH"])(lambda: None)
    with pytest.raises(AgentDefinitionError, match="generator"):
        agent.route("/gen")(lambda: (yield))  # type: ignore[arg-type]
    with pytest.raises(AgentDefinitionError, match="positive number of seconds"):
        agent.on_startup(timeout=0)
    with pytest.raises(AgentDefinitionError, match="ASGI middleware class"):
        agent.add_middleware("not a class")
    agent.route("/twice")(lambda: 1)
    agent.route("/twice")(lambda: 2)
    with pytest.raises(AgentDefinitionError, match="declared twice"):
        agent.check()


def test_hooks_decorate_with_and_without_arguments() -> None:
    agent = _agent()

    @agent.on_startup
    def start(state: Any) -> None: ...

    @agent.on_shutdown(timeout=0.5)
    async def stop(state: Any) -> None: ...

    ext = agent.server_extensions
    assert [h.name for h in ext.startup] == [start.__qualname__]
    assert ext.shutdown[0].timeout == 0.5
    described = ext.describe()
    assert described["on_startup"] == [start.__qualname__]
    assert described["on_shutdown"] == [stop.__qualname__]
    assert bool(ext) and not AgentExtensions()


def test_a_responses_agent_declares_them_on_a_class_attribute() -> None:
    from mlflow.pyfunc import ResponsesAgent

    class Declared(ResponsesAgent):
        server_extensions = AgentExtensions()

        @server_extensions.route("/status")
        def status() -> dict[str, str]:  # type: ignore[misc]
            return {"ok": "yes"}

        def predict(self, request: Any) -> Any:
            return {"output": []}

    agent = as_agent(Declared())
    assert [r.path for r in agent.server_extensions.routes] == ["/status"]

    class Wrong(ResponsesAgent):
        server_extensions = {"routes": []}

        def predict(self, request: Any) -> Any:
            return {"output": []}

    with pytest.raises(AgentDefinitionError, match="must be an mlflow_app_agent.AgentExtensions"):
        as_agent(Wrong())
