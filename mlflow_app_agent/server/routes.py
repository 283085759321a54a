"""Request handlers. Plain Starlette endpoints (no FastAPI dependency injection) because
the agent routes are the hot path; their OpenAPI description is attached in ``app.py``."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from mlflow_app_agent.authoring import to_request
from mlflow_app_agent.context import reset_request_context, set_request_context
from mlflow_app_agent.errors import AgentExecutionError, RequestError
from mlflow_app_agent.server.auth import (
    context_from,
    header_map,
    request_id_from,
    require_identity,
)
from mlflow_app_agent.server.body import (
    normalize_openai_input,
    parse_json_object,
    read_body,
    require_json,
    wants_stream,
)
from mlflow_app_agent.server.errors import (
    ErrorPolicy,
    error_body,
    request_timeout_error,
    to_app_error,
)
from mlflow_app_agent.server.extensions import enrich_context
from mlflow_app_agent.server.info import agent_info
from mlflow_app_agent.server.observe import record_of
from mlflow_app_agent.server.openai_compat import ResponsesShaper, envelope
from mlflow_app_agent.server.redact import encodable_tree, request_secrets
from mlflow_app_agent.server.runtime import NotReadyError, Runtime, not_ready_error
from mlflow_app_agent.server.streaming import AgentEventStream, EventShaper
from mlflow_app_agent.server.tracing import HEADER_TRACE_ID, always_traced

HEADER_REQUEST_ID = "x-request-id"
ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONBody:
    """A pre-encoded JSON response as a bare ASGI callable: the agent routes are the hot path
    and Starlette's Response adds header bookkeeping we do not need."""

    __slots__ = ("body", "status", "request_id", "trace_id", "code")

    def __init__(self, body: bytes, status: int = 200, request_id: str | None = None,
                 trace_id: str | None = None, code: str = "") -> None:
        self.body = body
        self.status = status
        self.request_id = request_id
        self.trace_id = trace_id
        self.code = code  # the error code of an error response (for metrics and the log)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.body)).encode()),
        ]
        if self.request_id:
            headers.append((b"x-request-id", self.request_id.encode("latin-1")))
        if self.trace_id:
            headers.append((HEADER_TRACE_ID.encode(), self.trace_id.encode("latin-1")))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def _json(payload: Any, status: int = 200, request_id: str | None = None,
          trace_id: str | None = None) -> JSONBody:
    return JSONBody(json.dumps(payload, separators=(",", ":")).encode(), status, request_id,
                    trace_id)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def invocations(request: Request) -> Any:
    return await _handle(request, openai=False)


async def responses(request: Request) -> Any:
    return await _handle(request, openai=True)


async def _handle(request: Request, *, openai: bool) -> Any:
    runtime = _runtime(request)
    headers = header_map(request.scope["headers"])
    request_id = request_id_from(headers)
    ctx = context_from(headers, request_id)
    secrets = request_secrets(headers)
    errors = runtime.errors
    rec = record_of(request.scope)
    if rec is not None:
        rec.request_id = request_id
        rec.user = ctx.user
    try:
        if runtime.settings.require_auth:
            require_identity(ctx)
        require_json(headers.get("content-type"))
        raw = await read_body(request, headers, runtime.settings.max_body_bytes,
                              runtime.settings.body_read_timeout, runtime.deadlines)
        if rec is not None:
            rec.bytes_in = len(raw)
        data = parse_json_object(raw)
        if openai:
            data = normalize_openai_input(data)
        stream = wants_stream(data, headers.get("accept"))
        if rec is not None:
            rec.mode = "stream" if stream else "invoke"
        try:
            served = await runtime.agent()
        except NotReadyError:
            raise not_ready_error(runtime) from None  # a load failure keeps its own code
        # the hooks get Starlette's case-insensitive Headers, as documented
        if served.agent.server_extensions.context_hooks:
            ctx = enrich_context(served.agent.server_extensions, ctx, request.headers)
        try:
            req = to_request(data)
        except RequestError as exc:
            # Well-formed JSON with the wrong shape: 422, naming the fields.
            raise RequestError(exc.message, code="invalid_request", status_code=422) from None
    except Exception as exc:
        return _error(errors, exc, request_id, secrets)

    agent = served.agent
    model = str(data.get("model") or agent.name)
    endpoint = request.scope["path"]
    # JSON escapes can carry lone surrogates, which no trace store can encode
    traced = encodable_tree(data) if ESCAPED_SURROGATE.search(raw) else data
    span = runtime.tracer.request_span(agent.name, endpoint, traced, ctx,
                                       always=always_traced(headers))
    timeout = runtime.settings.request_timeout
    if stream:
        shaper: EventShaper = ResponsesShaper(model=model) if openai else EventShaper()
        return AgentEventStream(
            agent.astream(req, limiter=runtime.limiter),
            shaper=shaper,
            span=span,
            ctx=ctx,
            timeout=timeout,
            headers={HEADER_REQUEST_ID: request_id},
            errors=errors,
            secrets=secrets,
            record=rec,
        )

    token = set_request_context(ctx)
    try:
        with span:
            try:
                # the app's deadlines: a dict entry, where asyncio.timeout schedules a timer
                # (~5 µs) and anyio.fail_after costs ~15 µs per request
                deadline = runtime.deadlines.after(timeout)
                async with deadline:
                    result = await agent.ainvoke(req, limiter=runtime.limiter)
                result = _check_result(result)
            except Exception as exc:
                if isinstance(exc, TimeoutError) and deadline.expired:
                    exc = request_timeout_error(timeout)
                errors.log(exc, request_id, secrets)
                err = to_app_error(exc)
                span.set_error(err.code, errors.trace_message(err, secrets))
                return _error(errors, err, request_id, secrets, span.trace_id)
            span.set_outputs(result)
    finally:
        reset_request_context(token)
        if rec is not None and span.active:
            rec.trace_id, rec.span_id = span.trace_id, span.span_id
    if openai:
        result = envelope(result, model=model)
    try:
        return _json(result, 200, request_id, span.trace_id)
    except (TypeError, ValueError) as exc:
        err = AgentExecutionError(f"the agent returned a response that is not JSON: {exc}")
        errors.log(err, request_id, secrets)
        return _error(errors, err, request_id, secrets)


def _error(errors: ErrorPolicy, exc: BaseException, request_id: str,
           secrets: tuple[str, ...], trace_id: str | None = None) -> JSONBody:
    """The error response (with the trace id header when traced), carrying its code for the
    metrics and the access log."""
    err = to_app_error(exc)
    status, body = errors.body(err, request_id, secrets)
    return JSONBody(body, status, request_id, trace_id, err.code)


def _check_result(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict) or not isinstance(result.get("output"), list):
        kind = type(result).__name__
        raise AgentExecutionError(
            f"the agent returned {kind}, not a ResponsesAgentResponse (a dict with an "
            "'output' list)"
        )
    return result


async def health(request: Request) -> Any:
    return _json({"status": "ok"})


async def ready(request: Request) -> Any:
    runtime = _runtime(request)
    if runtime.served is not None:
        return _json({"status": "ready", "agent": runtime.served.agent.name})
    err = not_ready_error(runtime)
    status, body = error_body(err, None)
    return Response(body, status_code=503, media_type="application/json")


async def info(request: Request) -> Any:
    runtime = _runtime(request)
    if not runtime.ready:
        err = not_ready_error(runtime)
        status, body = error_body(err, None)
        return Response(body, status_code=503, media_type="application/json")
    served = runtime.served
    if served is not None and served.source_file and not served.git:  # read on first ask
        from mlflow_app_agent.server.source import working_tree_git

        served.git = await anyio.to_thread.run_sync(working_tree_git, served.source_file)
    return _json(agent_info(runtime, request.app.state.telemetry.stats()))


async def metrics(request: Request) -> Any:
    """Prometheus text exposition of the app's metrics."""
    from prometheus_client import CONTENT_TYPE_LATEST

    body = request.app.state.telemetry.metrics.prometheus_text()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
