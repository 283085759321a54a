"""``POST /feedback``: a person's thumbs up/down (and comment) on an answer, as an MLflow 3
assessment on that answer's trace, with the signed-in user as its HUMAN source.

Body: ``{"request_id": "..."}`` or ``{"trace_id": "..."}``, ``"value": true|false`` and an
optional ``"comment"``. The source is the forwarded identity (email, else username), never
the token. The same user giving feedback on the same answer again updates their assessment
instead of adding one; an update without a comment keeps the comment given before. An id this server did not trace (unknown, sampled out, another
user's) is a 404; traces are written in the background, so a feedback that arrives first
waits a few seconds for its trace to land.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from mlflow_app_agent.errors import MlflowAppAgentError, NotFoundError, RequestError
from mlflow_app_agent.server.auth import context_from, request_id_from, require_identity
from mlflow_app_agent.server.body import parse_json_object, read_body, require_json
from mlflow_app_agent.server.redact import request_secrets
from mlflow_app_agent.server.runtime import Runtime

logger = logging.getLogger("mlflow_app_agent.server")

#: the assessment's name on the trace
FEEDBACK_NAME = "user_feedback"
#: the source id when no identity is forwarded (local runs without ``--require-auth``)
ANONYMOUS = "anonymous"
MAX_FEEDBACK_BYTES = 64 * 1024
MAX_COMMENT_CHARS = 5000
#: seconds a feedback waits for its (background-written) trace to reach the store: the
#: writer's first trace includes its MLflow start-up, which takes tens of seconds on a
#: loaded machine
TRACE_WAIT = 60.0

_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_write_lock = threading.Lock()  # one read-then-update per process at a time


@dataclass(frozen=True)
class FeedbackRequest:
    request_id: str | None
    trace_id: str | None
    value: bool
    comment: str | None


def parse_feedback(data: dict[str, Any]) -> FeedbackRequest:
    def bad(message: str) -> RequestError:
        return RequestError(message, code="invalid_request", status_code=422)

    unknown = set(data) - {"request_id", "trace_id", "value", "comment"}
    if unknown:
        raise bad(f"unknown field(s) {', '.join(sorted(unknown))}; send request_id or "
                  "trace_id, value and an optional comment")
    ids = {k: data.get(k) for k in ("request_id", "trace_id") if data.get(k) is not None}
    if len(ids) != 1:
        raise bad("send exactly one of request_id or trace_id (the answer's "
                  "X-Request-Id or X-MLflow-Trace-Id response header)")
    (key, ident), = ids.items()
    if not isinstance(ident, str) or not _ID.match(ident):
        raise bad(f"{key} must be a string of 1-128 letters, digits or ._:@/+=-")
    value = data.get("value")
    if not isinstance(value, bool):
        raise bad("value must be true (thumbs up) or false (thumbs down)")
    comment = data.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise bad("comment must be a string")
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise bad(f"comment is longer than {MAX_COMMENT_CHARS} characters")
    return FeedbackRequest(ids.get("request_id"), ids.get("trace_id"), value,
                           comment.strip() or None if comment else None)


async def feedback(request: Request) -> Any:
    from mlflow_app_agent.server.routes import JSONBody, _json

    runtime: Runtime = request.app.state.runtime
    headers = request.headers
    request_id = request_id_from(headers)
    ctx = context_from(headers, request_id)
    secrets = request_secrets(headers)
    errors = runtime.errors
    try:
        if runtime.settings.require_auth:
            require_identity(ctx)
        require_json(headers.get("content-type"))
        raw = await read_body(request, headers, MAX_FEEDBACK_BYTES,
                              runtime.settings.body_read_timeout, runtime.deadlines)
        fb = parse_feedback(parse_json_object(raw))
        if not runtime.tracer.enabled:
            raise NotFoundError("this server does not trace requests (tracing is off), so "
                                "there is no trace to attach feedback to")
        await runtime.agent()  # MLflow imported and tracing warmed up
        user = ctx.user or ANONYMOUS
        result = await anyio.to_thread.run_sync(_record, runtime, fb, user)
    except Exception as exc:
        errors.log(exc, request_id, secrets)
        status, body = errors.body(exc, request_id, secrets)
        return JSONBody(body, status, request_id)
    return _json(result, 200, request_id, result["trace_id"])


def _record(runtime: Runtime, fb: FeedbackRequest, user: str) -> dict[str, Any]:
    import mlflow
    from mlflow.entities import AssessmentSource, AssessmentSourceType, Feedback

    trace_id, owner = _resolve(runtime, fb)
    what = f"request_id {fb.request_id!r}" if fb.request_id else f"trace_id {fb.trace_id!r}"
    if owner and user != ANONYMOUS and owner != user:
        trace_id = None  # another user's answer: indistinguishable from an unknown one
    info = _stored_trace(trace_id, wait=False) if trace_id else None
    if info is None and trace_id and _traced_here(runtime, trace_id):
        _flush_writer(runtime, TRACE_WAIT)  # written in the background: wait for it to land
        info = _stored_trace(trace_id, wait=True)
    if info is None:
        raise NotFoundError(f"no traced answer with {what} on this server (unknown id, or "
                            "the request was not traced)")
    with _write_lock:
        mine = [a for a in (_stored_trace(info.trace_id, wait=False) or info).assessments or []
                if a.name == FEEDBACK_NAME and a.source is not None
                and a.source.source_type == AssessmentSourceType.HUMAN
                and a.source.source_id == user]
        comment = fb.comment
        if mine:
            # a value-only update (a thumb click) keeps the comment already given
            comment = fb.comment if fb.comment is not None else (mine[-1].rationale or None)
            updated = Feedback(name=FEEDBACK_NAME, value=fb.value, rationale=comment or "")
            saved = mlflow.update_assessment(trace_id=info.trace_id,
                                             assessment_id=mine[-1].assessment_id,
                                             assessment=updated)
        else:
            saved = mlflow.log_feedback(
                trace_id=info.trace_id, name=FEEDBACK_NAME, value=fb.value,
                rationale=fb.comment,
                source=AssessmentSource(source_type=AssessmentSourceType.HUMAN,
                                        source_id=user),
            )
    return {"trace_id": info.trace_id, "assessment_id": saved.assessment_id,
            "name": FEEDBACK_NAME, "value": fb.value, "comment": comment,
            "source": {"type": "HUMAN", "id": user}, "updated": bool(mine)}


def _resolve(runtime: Runtime, fb: FeedbackRequest) -> tuple[str | None, str | None]:
    """(trace id, the user it was traced for) from this process's memory, else the store."""
    recent = runtime.tracer.recent
    if fb.request_id:
        hit = recent.get(fb.request_id)
        if hit is not None:
            return hit
        return _search_by_request_id(runtime, fb.request_id)
    for trace_id, owner in list(recent.values()):
        if trace_id == fb.trace_id:
            return trace_id, owner
    info = _stored_trace(fb.trace_id, wait=False)
    if info is None:
        return None, None
    return info.trace_id, (info.trace_metadata or {}).get("mlflow.trace.user")


def _traced_here(runtime: Runtime, trace_id: str) -> bool:
    return any(tid == trace_id for tid, _ in list(runtime.tracer.recent.values()))


def _flush_writer(runtime: Runtime, timeout: float) -> None:
    """Wait until the traces handed to the writer (process or MLflow's thread) are stored."""
    try:
        writer = runtime.tracer.writer()
        if writer is not None:
            writer.flush(timeout=timeout)
        else:
            import mlflow

            mlflow.flush_trace_async_logging()
    except Exception:  # polling the store below still finds the trace if it lands
        logger.warning("flushing the trace writer before logging feedback failed",
                       exc_info=True)


def _search_by_request_id(runtime: Runtime, request_id: str) -> tuple[str | None, str | None]:
    """Another worker process may have served it: ask the store (client_request_id)."""
    import mlflow

    destination = runtime.tracer.destination
    experiment_id = getattr(destination, "experiment_id", None)
    if not experiment_id:
        return None, None
    found = mlflow.MlflowClient().search_traces(
        locations=[experiment_id], max_results=1, include_spans=False,
        filter_string=f"trace.client_request_id = '{request_id}'",
    )
    if not found:
        return None, None
    info = found[0].info
    return info.trace_id, (info.trace_metadata or {}).get("mlflow.trace.user")


def _stored_trace(trace_id: str | None, *, wait: bool) -> Any:
    """The trace's info as the store has it (not MLflow's in-memory copy of a trace still
    being recorded); with ``wait``, poll while the background writer catches up."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracing.client import TracingClient

    if not trace_id:
        return None
    store = TracingClient().store
    deadline = time.monotonic() + (TRACE_WAIT if wait else 0.0)
    while True:
        try:
            return store.get_trace_info(trace_id)
        except MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND",
                                      "INVALID_PARAMETER_VALUE"):
                raise MlflowAppAgentError(f"the tracking store refused the lookup of trace "
                                          f"{trace_id}: {exc.message}") from None
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
