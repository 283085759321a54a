"""A template-like agent with server extensions: a start-up hook opening a resource, a route
using it, a middleware stamping responses, a request-context hook, and a shutdown hook
closing the resource. Models from code: ``ext_support`` ships in code_paths."""

from __future__ import annotations

import os

import mlflow
from ext_support import Ledger, StampHeader, marker_dir, record
from fastapi import Request

from mlflow_app_agent import Agent, request_context

agent = Agent("ext-agent")
agent.add_middleware(StampHeader, value="ext")


@agent.on_startup
def open_ledger(state):  # type: ignore[no-untyped-def]
    if os.environ.get("EXT_FAIL_STARTUP") == "raise":
        raise RuntimeError("the ledger database is unreachable")
    if os.environ.get("EXT_FAIL_STARTUP") == "hang":
        import time

        time.sleep(float(os.environ.get("EXT_HANG_SECONDS", "30")))
    state.ledger = Ledger(marker_dir() / "ledger.db")
    record("opened", pid=os.getpid())


@agent.on_shutdown
async def close_ledger(state):  # type: ignore[no-untyped-def]
    state.ledger.close()
    record("closed", pid=os.getpid())


@agent.request_context_hook
def tenant(ctx, headers):  # type: ignore[no-untyped-def]
    return {"tenant": headers.get("x-tenant")} if headers.get("x-tenant") else None


@agent.route("/ledger", methods=["GET", "POST"])
async def ledger(request: Request):  # type: ignore[no-untyped-def]
    ctx = request_context()
    return {"hits": request.app.state.ledger.hit(), "user": ctx.user,
            "tenant": ctx.extra.get("tenant")}


@agent.route("/boom", traced=False)
def boom():  # type: ignore[no-untyped-def]
    raise ValueError("the export failed")


@agent.route("/public", auth=False)
def public():  # type: ignore[no-untyped-def]
    return {"ok": True}


@agent.invoke_method
def invoke(request):  # type: ignore[no-untyped-def]
    text = str(request.input[-1].content)
    tenant_name = request_context().extra.get("tenant")
    answer = f"{text} (tenant {tenant_name})" if tenant_name else text
    return {"output": [{"type": "message", "id": "m1", "role": "assistant",
                        "content": [{"type": "output_text", "text": answer}]}]}


mlflow.models.set_model(agent)
