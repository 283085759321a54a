"""The error contract: ``{"error": {"code", "message", "request_id"}}`` with the right status,
never a traceback, never a secret (see :mod:`.redact`). With ``error_detail="none"`` an agent
failure (500 ``agent_error``) says only that it failed and the request id; the scrubbed
detail stays in the server log and the trace."""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback
from collections.abc import Iterable
from typing import Any

from mlflow_app_agent.errors import AgentExecutionError, AgentTimeoutError, MlflowAppAgentError
from mlflow_app_agent.server.redact import NO_APP_SECRETS, Redactor

logger = logging.getLogger("mlflow_app_agent.server")

_MAX_MESSAGE = 1000


def request_timeout_error(seconds: float) -> AgentTimeoutError:
    """The server's own per-request deadline passed (a 504, or a ``timeout`` stream event)."""
    return AgentTimeoutError(
        f"the agent did not answer within the request timeout of {seconds:g} s "
        "(MLFLOW_APP_AGENT_REQUEST_TIMEOUT or serve --timeout)"
    )


def to_app_error(exc: BaseException) -> MlflowAppAgentError:
    """Any exception as a toolkit error; foreign ones become a 500 ``agent_error`` — also a
    ``TimeoutError`` the agent raised itself (e.g. its LLM call timed out): only the
    server's own deadline is a 504, and the call sites that own it convert it."""
    if isinstance(exc, MlflowAppAgentError):
        return exc
    text = str(exc).strip()
    message = f"the agent raised {type(exc).__name__}" + (f": {text}" if text else "")
    return AgentExecutionError(message)


#: error codes whose message ``error_detail="none"`` replaces (the agent's own text)
_AGENT_TEXT_CODES = ("agent_error",)


def scrub(message: str, secrets: Iterable[str | None] = (),
          redactor: Redactor | None = None) -> str:
    """``message`` without secrets (see :mod:`.redact`), cut to a sane length."""
    message = (redactor or NO_APP_SECRETS)(message, secrets)
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message


def error_payload(
    exc: BaseException, request_id: str | None, secrets: Iterable[str | None] = (), *,
    redactor: Redactor | None = None, detail: str = "message",
) -> tuple[int, dict[str, Any]]:
    err = to_app_error(exc)
    if detail == "none" and err.code in _AGENT_TEXT_CODES:
        message = (f"the agent failed; the server log and trace of request {request_id} "
                   "have the details")
    else:
        message = scrub(err.message, secrets, redactor)
    body = {"error": {"code": err.code, "message": message, "request_id": request_id}}
    return err.status_code, body


def error_body(
    exc: BaseException, request_id: str | None, secrets: Iterable[str | None] = (), *,
    redactor: Redactor | None = None, detail: str = "message",
) -> tuple[int, bytes]:
    status, body = error_payload(exc, request_id, secrets, redactor=redactor, detail=detail)
    return status, json.dumps(body).encode()


def log_failure(exc: BaseException, request_id: str | None,
                secrets: Iterable[str | None] = (), redactor: Redactor | None = None) -> None:
    """Server-side record of an agent failure: the traceback, scrubbed like the error body
    (it is formatted here, so no handler ever sees the raw text)."""
    if isinstance(exc, MlflowAppAgentError) and exc.status_code < 500:
        return
    text = "".join(traceback.format_exception(exc)).rstrip()
    logger.error("request %s failed\n%s", request_id, (redactor or NO_APP_SECRETS)(text, secrets))


def shutdown_error() -> MlflowAppAgentError:
    """What a request still running when the graceful shutdown ends is answered with."""
    return MlflowAppAgentError(
        "the server is shutting down and stopped this request; retry it", code="shutdown",
        status_code=503,
    )


@dataclasses.dataclass(frozen=True)
class ErrorPolicy:
    """One app's way of answering and logging failures: its secrets and ``error_detail``."""

    redactor: Redactor = NO_APP_SECRETS
    detail: str = "message"

    def payload(self, exc: BaseException, request_id: str | None,
                secrets: Iterable[str | None] = ()) -> tuple[int, dict[str, Any]]:
        return error_payload(exc, request_id, secrets, redactor=self.redactor,
                             detail=self.detail)

    def body(self, exc: BaseException, request_id: str | None,
             secrets: Iterable[str | None] = ()) -> tuple[int, bytes]:
        status, payload = self.payload(exc, request_id, secrets)
        return status, json.dumps(payload).encode()

    def log(self, exc: BaseException, request_id: str | None,
            secrets: Iterable[str | None] = ()) -> None:
        log_failure(exc, request_id, secrets, self.redactor)

    def trace_message(self, err: MlflowAppAgentError, secrets: Iterable[str | None]) -> str:
        """The full (scrubbed) message for the trace, whatever callers are shown."""
        return scrub(err.message, secrets, self.redactor)
