"""Who is calling: the Databricks Apps proxy headers become a :class:`RequestContext`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from mlflow_app_agent.context import (
    HEADER_ACCESS_TOKEN,
    HEADER_EMAIL,
    HEADER_PREFERRED_USERNAME,
    HEADER_REQUEST_ID,
    HEADER_USER,
    RequestContext,
)
from mlflow_app_agent.errors import AuthenticationRequiredError

# A client-supplied id is echoed in headers and traces: keep it short and printable.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


def new_request_id() -> str:
    """32 random hex digits (as ``uuid4().hex``, at a quarter of the cost)."""
    return os.urandom(16).hex()


def header_map(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers (lower-case names) as a dict, for the several lookups a request needs
    (Starlette's ``Headers.get`` scans the list on each). Of a repeated header the first
    wins, as with ``Headers.get``."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(raw)}


def request_id_from(headers: Mapping[str, str]) -> str:
    """The caller's ``X-Request-Id`` when it is sane, else a fresh one."""
    rid = headers.get(HEADER_REQUEST_ID)
    if rid and _SAFE_ID.match(rid):
        return rid
    return new_request_id()


def context_from(headers: Mapping[str, str], request_id: str) -> RequestContext:
    """Build the context from (lower-case, ASGI) headers; ``request_id`` already resolved."""
    return RequestContext(
        request_id=request_id,
        user_email=headers.get(HEADER_EMAIL) or None,
        user_name=headers.get(HEADER_USER) or None,
        preferred_username=headers.get(HEADER_PREFERRED_USERNAME) or None,
        access_token=headers.get(HEADER_ACCESS_TOKEN) or None,
    )


def require_identity(ctx: RequestContext) -> None:
    if not ctx.is_authenticated:
        raise AuthenticationRequiredError(
            "this agent requires a forwarded identity (X-Forwarded-Email, X-Forwarded-User or "
            "X-Forwarded-Preferred-Username); call it through the Databricks Apps proxy"
        )
