"""Scenario (e) agents: the (b) echo agent with one no-op server extension each
(``mlflow_app_agent.extensions``). Kept apart from ``agents.py``, which the pre-extensions
baseline (``ours-before-ext``) imports too."""

from __future__ import annotations

from typing import Any

from agents import echo_invoke

from mlflow_app_agent import Agent


class PassThrough:
    """A pure ASGI middleware that does nothing: the cheapest middleware a user can add."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


# one extra route and one start-up hook: nothing on the agent routes' path
echo_route = Agent("echo")
echo_route.invoke_method(echo_invoke)


@echo_route.route("/noop")
def noop() -> dict[str, bool]:
    return {"ok": True}


@echo_route.on_startup
def warm(state: Any) -> None:
    state.warm = True


# one pass-through middleware: one more ASGI layer around every request
echo_middleware = Agent("echo")
echo_middleware.invoke_method(echo_invoke)
echo_middleware.add_middleware(PassThrough)
