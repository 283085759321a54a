"""The error contract: ``{"error": {"code", "message", "request_id"}}`` with the right status,
never a traceback, never the caller's token."""

from __future__ import annotations

import json
import logging
from typing import Any

from mlflow_app_agent.errors import AgentExecutionError, AgentTimeoutError, MlflowAppAgentError

logger = logging.getLogger("mlflow_app_agent.server")

_MAX_MESSAGE = 1000


def to_app_error(exc: BaseException) -> MlflowAppAgentError:
    """Any exception as a toolkit error; foreign ones become a 500 ``agent_error``."""
    if isinstance(exc, MlflowAppAgentError):
        return exc
    if isinstance(exc, TimeoutError):
        return AgentTimeoutError("the agent did not answer within the request timeout")
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
