"""The server applies an agent's extensions: routes with the agent routes' conventions,
middleware, hooks around the agent's life, and ``--app-factory`` (in-process, real app)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from mlflow_app_agent import Agent, request_context
from mlflow_app_agent.errors import ExtensionError
from mlflow_app_agent.server import create_app
from mlflow_app_agent.server.app import AgentApp, build_app

EXT_AGENT_DIR = Path(__file__).parent / "ext_agent"
REQUEST = {"input": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def _untraced_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """These apps test extensions, not traces: without this, each app's warm-up starts a
    trace writer process (~3 s of CPU importing MLflow) that nothing here writes to. The
    test of the extension routes' tracing decision turns tracing on by argument."""
    monkeypatch.setenv("MLFLOW_APP_AGENT_TRACING", "false")


def _agent(**hooks: Any) -> Agent:
    agent = Agent("ext")

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        ctx = request_context()
        text = f"tenant={ctx.extra.get('tenant')} user={ctx.user}"
        return {"output": [{"type": "message", "id": "m", "role": "assistant",
                            "content": [{"type": "output_text", "text": text}]}]}

    return agent


def wait_ready(client: TestClient, deadline: float = 30.0) -> Any:
    end = time.monotonic() + deadline
    while (resp := client.get("/ready")).status_code != 200 and time.monotonic() < end:
        if "failed" in resp.text:
            return resp
        time.sleep(0.02)
    return resp


class Stamp:
    def __init__(self, app: Any, value: str) -> None:
        self.app, self.value = app, value.encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-stamp", self.value)]
            await send(message)

        await self.app(scope, receive, stamped)


def test_no_extensions_installs_nothing() -> None:
    app = create_app(_agent())
    assert isinstance(app, AgentApp) and app.extension_stack is None
    paths = {getattr(r, "path", None) for r in app.router.routes}
    with TestClient(app) as client:
        assert client.get("/agent/info").json()["extensions"]["routes"] == []
    assert {getattr(r, "path", None) for r in app.router.routes} == paths


def test_routes_middleware_hooks_and_context_together() -> None:
    agent = _agent()
    events: list[str] = []
    agent.add_middleware(Stamp, value="outer")

    @agent.on_startup
    async def open_pool(state: Any) -> None:
        state.pool = ["conn"]
        events.append("started")

    @agent.on_shutdown
    def close_pool(state: Any) -> None:
        state.pool.clear()
        events.append("stopped")

    @agent.request_context_hook
    def tenant(ctx: Any, headers: Any) -> dict[str, Any] | None:
        return {"tenant": headers.get("x-tenant")} if "x-tenant" in headers else None

    @agent.route("/pool/{name}", methods=["GET"])
    async def pool(name: str, request: Request) -> dict[str, Any]:
        return {"name": name, "pool": request.app.state.pool,
                "tenant": request_context().extra.get("tenant")}

    with TestClient(create_app(agent)) as client:
        assert wait_ready(client).status_code == 200
        assert events == ["started"]
        got = client.get("/pool/a", headers={"x-tenant": "acme", "x-request-id": "rid-1"})
        assert got.status_code == 200, got.text
        assert got.json() == {"name": "a", "pool": ["conn"], "tenant": "acme"}
        assert got.headers["x-request-id"] == "rid-1" and got.headers["x-stamp"] == "outer"
        # the middleware wraps the contract routes too; the context hook reaches the agent
        answer = client.post("/invocations", json=REQUEST, headers={"x-tenant": "acme"})
        assert answer.headers["x-stamp"] == "outer"
        assert "tenant=acme" in answer.json()["output"][0]["content"][0]["text"]
        assert client.get("/health").headers["x-stamp"] == "outer"
        info = client.get("/agent/info").json()["extensions"]
        assert info["routes"][0]["path"] == "/pool/{name}"
        assert info["middleware"] == ["Stamp"]
        assert info["on_startup"] and info["on_shutdown"] and info["request_context_hooks"]
        # validate and the fuzzer read /openapi.json: it keeps describing the contract only
        described = set(client.get("/openapi.json").json()["paths"])
        assert "/pool/{name}" not in described and "/invocations" in described
    assert events == ["started", "stopped"]


def test_extension_routes_follow_auth_and_the_error_envelope() -> None:
    agent = _agent()

    @agent.route("/private")
    def private() -> dict[str, Any]:
        return {"user": request_context().user}

    @agent.route("/open", auth=False)
    def open_route() -> dict[str, bool]:
        return {"ok": True}

    @agent.route("/fail", methods=["POST"])
    def fail() -> None:
        raise RuntimeError("export failed")

    @agent.route("/gone")
    def gone() -> None:
        raise HTTPException(status_code=404, detail="no such export")

    @agent.route("/typed")
    def typed(limit: int) -> dict[str, int]:
        return {"limit": limit}

    with TestClient(create_app(agent, require_auth=True)) as client:
        refused = client.get("/private")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
        who = client.get("/private", headers={"x-forwarded-email": "ana@example.com"})
        assert who.json() == {"user": "ana@example.com"}
        assert client.get("/open").json() == {"ok": True}
        headers = {"x-forwarded-email": "ana@example.com"}
        failed = client.post("/fail", headers=headers)
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error["code"] == "agent_error" and "export failed" in error["message"]
        assert "Traceback" not in failed.text
        missing = client.get("/gone", headers=headers)
        assert missing.status_code == 404 and missing.json()["error"]["message"] == (
            "no such export")
        bad = client.get("/typed?limit=many", headers=headers)
        assert bad.status_code == 422 and "limit" in bad.json()["error"]["message"]


def test_extension_routes_take_the_tracing_decision(tracking_uri: str) -> None:
    agent = _agent()

    @agent.route("/traced")
    def traced() -> dict[str, bool]:
        return {"ok": True}

    @agent.route("/untraced", traced=False)
    def untraced() -> dict[str, bool]:
        return {"ok": True}

    def total(stats: dict[str, Any]) -> float:
        return sum(v for k, v in stats.items() if isinstance(v, (int, float))
                   and not isinstance(v, bool) and k in ("traced", "skipped", "sampled_out"))

    with TestClient(create_app(agent, tracing=True, trace_sample_ratio=0.0)) as client:
        wait_ready(client)
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        before = total(runtime.tracer.stats())
        client.get("/untraced")
        assert total(runtime.tracer.stats()) == before
        client.get("/traced")
        assert total(runtime.tracer.stats()) == before + 1


def test_a_failing_startup_hook_keeps_the_process_up_with_ready_503(caplog: Any) -> None:
    agent = _agent()

    @agent.on_startup
    def connect(state: Any) -> None:
        raise ConnectionError("database at db:5432 refused the connection")

    @agent.route("/needs-db")
    def needs_db() -> dict[str, bool]:
        return {"ok": True}

    with TestClient(create_app(agent)) as client:
        ready = wait_ready(client)
        assert ready.status_code == 503
        error = ready.json()["error"]
        assert error["code"] == "extension_error"
        assert error["message"].startswith("the agent's start-up failed: start-up hook '")
        assert error["message"].endswith(".connect' failed: ConnectionError: database at "
                                         "db:5432 refused the connection")
        call = client.post("/invocations", json=REQUEST)
        assert call.status_code == 503 and call.json()["error"]["code"] == "extension_error"
        assert client.get("/needs-db").status_code == 404  # nothing half-configured
        assert client.get("/health").status_code == 200


def test_a_hanging_startup_hook_fails_after_its_timeout() -> None:
    agent = _agent()

    @agent.on_startup(timeout=0.2)
    def slow(state: Any) -> None:
        time.sleep(5)

    with TestClient(create_app(agent)) as client:
        ready = wait_ready(client)
        assert ready.status_code == 503
        assert "did not finish within its timeout of 0.2 s" in ready.json()["error"]["message"]


def test_shutdown_hooks_are_bounded_and_failures_logged(caplog: Any) -> None:
    agent = _agent()
    ran: list[str] = []

    @agent.on_shutdown(timeout=0.2)
    async def hangs(state: Any) -> None:
        import asyncio

        await asyncio.sleep(30)

    @agent.on_shutdown
    def raises(state: Any) -> None:
        raise RuntimeError("flush failed")

    @agent.on_shutdown
    def last(state: Any) -> None:
        ran.append("last")

    with caplog.at_level(logging.WARNING, logger="mlflow_app_agent.server"):
        with TestClient(create_app(agent)) as client:
            wait_ready(client)
    assert ran == ["last"]
    text = caplog.text
    assert "hangs did not finish" in text and "raises failed: RuntimeError: flush failed" in text


@pytest.fixture
def ext_support(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(EXT_AGENT_DIR))
    yield
    sys.modules.pop("ext_support", None)


def test_app_factory_gets_the_built_app(ext_support: Any) -> None:
    app = build_app(_agent(), "ext_support:wrapping_factory")
    with TestClient(app) as client:
        assert client.get("/from-factory").json() == {"from": "factory"}
        assert client.post("/invocations", json=REQUEST).status_code == 200


@pytest.mark.parametrize(("spec", "message"), [
    ("ext_support:broken_factory", "returned dict, not an ASGI app"),
    ("ext_support", "must be MODULE:FUNCTION"),
    ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("ext_support:missing", "has no 'missing'"),
])
def test_app_factory_refusals(ext_support: Any, spec: str, message: str) -> None:
    with pytest.raises(ExtensionError, match=message):
        build_app(_agent(), spec)
