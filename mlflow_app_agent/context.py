"""The per-request context that tools read: who is calling, with which token, which request.

The server fills it from the Databricks Apps proxy headers; code inside the agent reads it
with :func:`request_context`. It lives in a :class:`contextvars.ContextVar`, so it follows
the request into worker threads and async tasks and never leaks between requests.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

# Header names the Databricks Apps proxy sets (lower-case, as ASGI delivers them).
HEADER_ACCESS_TOKEN = "x-forwarded-access-token"
HEADER_EMAIL = "x-forwarded-email"
HEADER_USER = "x-forwarded-user"
HEADER_PREFERRED_USERNAME = "x-forwarded-preferred-username"
HEADER_REQUEST_ID = "x-request-id"
FORWARDED_HEADERS = (
    HEADER_ACCESS_TOKEN,
    HEADER_EMAIL,
    HEADER_USER,
    HEADER_PREFERRED_USERNAME,
    HEADER_REQUEST_ID,
)


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """Who made the current request. Empty outside a request (e.g. in a notebook).

    ``access_token`` is the caller's on-behalf-of token; it is excluded from ``repr`` and
    from :meth:`to_public_dict` so it cannot end up in logs or traces by accident.
    """

    request_id: str | None = None
    user_email: str | None = None
    user_name: str | None = None
    preferred_username: str | None = None
    access_token: str | None = dataclasses.field(default=None, repr=False)
    #: fields added by the agent's request-context hooks (e.g. a tenant from a header)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def user(self) -> str | None:
        """The best human identifier available: email, then preferred username, then user."""
        return self.user_email or self.preferred_username or self.user_name

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user_email or self.user_name or self.preferred_username)

    def to_public_dict(self) -> dict[str, Any]:
        """Everything but the token: safe for logs, traces and responses."""
        return {
            "request_id": self.request_id,
            "user_email": self.user_email,
            "user_name": self.user_name,
            "preferred_username": self.preferred_username,
            "has_access_token": self.access_token is not None,
            **({"extra": dict(self.extra)} if self.extra else {}),
        }

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, str], *, request_id: str | None = None
    ) -> RequestContext:
        """Build a context from request headers (any case); ``request_id`` is the fallback id."""
        lower = {k.lower(): v for k, v in headers.items()}
        return cls(
            request_id=lower.get(HEADER_REQUEST_ID) or request_id,
            user_email=lower.get(HEADER_EMAIL) or None,
            user_name=lower.get(HEADER_USER) or None,
            preferred_username=lower.get(HEADER_PREFERRED_USERNAME) or None,
            access_token=lower.get(HEADER_ACCESS_TOKEN) or None,
        )


_EMPTY = RequestContext()
_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "mlflow_app_agent_request_context", default=_EMPTY
)


def request_context() -> RequestContext:
    """The context of the request being answered (an empty one outside a request)."""
    return _current.get()


@contextlib.contextmanager
def use_request_context(ctx: RequestContext) -> Iterator[RequestContext]:
    """Make ``ctx`` the current request context inside the ``with`` block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def set_request_context(ctx: RequestContext) -> contextvars.Token[RequestContext]:
    """Low-level setter for servers; pair with :func:`reset_request_context`."""
    return _current.set(ctx)


def reset_request_context(token: contextvars.Token[RequestContext]) -> None:
    _current.reset(token)
