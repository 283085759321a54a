"""The error contract: ``{"error": {"code", "message", "request_id"}}`` with the right status,
never a traceback, never the caller's token."""

from __future__ import annotations

import json
import logging
from typing import Any

from mlflow_app_agent.errors import AgentExecutionError, AgentTimeoutError, MlflowAppAgentError

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


def scrub(message: str, secrets: tuple[str | None, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            message = message.replace(secret, "[REDACTED]")
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return message


def error_payload(
    exc: BaseException, request_id: str | None, secrets: tuple[str | None, ...] = ()
) -> tuple[int, dict[str, Any]]:
    err = to_app_error(exc)
    body = {
        "error": {
            "code": err.code,
            "message": scrub(err.message, secrets),
            "request_id": request_id,
        }
    }
    return err.status_code, body


def error_body(
    exc: BaseException, request_id: str | None, secrets: tuple[str | None, ...] = ()
) -> tuple[int, bytes]:
    status, body = error_payload(exc, request_id, secrets)
    return status, json.dumps(body).encode()


def log_failure(exc: BaseException, request_id: str | None) -> None:
    """Server-side record of an agent failure (the traceback stays in the server log)."""
    if isinstance(exc, MlflowAppAgentError) and exc.status_code < 500:
        return
    logger.error("request %s failed", request_id, exc_info=exc)


def shutdown_error() -> MlflowAppAgentError:
    """What a request still running when the graceful shutdown ends is answered with."""
    return MlflowAppAgentError(
        "the server is shutting down and stopped this request; retry it", code="shutdown",
        status_code=503,
    )
