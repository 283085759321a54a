"""A small reverse proxy that behaves like the Databricks Apps proxy in front of an app.

It drops whatever identity headers the client sent and sets the ones Apps sets
(``X-Forwarded-Email``/``-User``/``-Preferred-Username``, ``X-Request-Id``, ``X-Real-Ip``,
``X-Forwarded-Host``, and ``X-Forwarded-Access-Token`` when on-behalf-of auth is on), then
streams the response back chunk by chunk so Server-Sent Events arrive as they are sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn
    from starlette.applications import Starlette

# hop-by-hop headers (RFC 9110 §7.6.1) are never forwarded
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}
_SET_BY_PROXY = {"x-real-ip", "x-request-id"}


@dataclass(frozen=True)
class Identity:
    """The user the local proxy pretends is signed in."""

    email: str
    workspace_id: str = "0"
    access_token: str | None = None

    def headers(self) -> dict[str, str]:
        # Apps sends the user's numeric id @ workspace id; derive a stable fake id.
        user_id = int(hashlib.sha256(self.email.encode()).hexdigest()[:12], 16)
        out = {
            "x-forwarded-email": self.email,
            "x-forwarded-user": f"{user_id}@{self.workspace_id}",
            "x-forwarded-preferred-username": self.email,
        }
        if self.access_token:
            out["x-forwarded-access-token"] = self.access_token
        return out


def _request_headers(
    raw: list[tuple[bytes, bytes]], identity: Identity, client_host: str
) -> list[tuple[str, str]]:
    host = ""
    out: list[tuple[str, str]] = []
    for key_b, value_b in raw:
        key = key_b.decode("latin-1").lower()
        value = value_b.decode("latin-1")
        if key == "host":
            host = value
        if key in _HOP or key in _SET_BY_PROXY or key.startswith("x-forwarded-"):
            continue
        out.append((key, value))
    out += list(identity.headers().items())
    out += [
        ("x-forwarded-host", host),
        ("x-real-ip", client_host),
        ("x-request-id", str(uuid.uuid4())),
    ]
    return out


def create_proxy_app(upstream: str, identity: Identity) -> Starlette:
    """An ASGI app forwarding every request to ``upstream`` (``http://127.0.0.1:PORT``)."""
    import httpx
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # no read timeout: agent streams may pause for long; Apps itself cuts at ~120 s
        timeout = httpx.Timeout(None, connect=10.0)
        async with httpx.AsyncClient(base_url=upstream, timeout=timeout) as client:
            state["client"] = client
            yield

    async def forward(request: Request) -> Response:
        client = state["client"]
        headers = _request_headers(
            request.headers.raw, identity, request.client.host if request.client else ""
        )
        upstream_request = client.build_request(
            request.method,
            request.url.path,
            params=request.url.query,
            headers=headers,
            content=request.stream(),
        )
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.TransportError as exc:
            return Response(f"local Apps proxy: the app is not reachable ({exc})\n", 502)
        response_headers = {
            k: v for k, v in response.headers.items() if k.lower() not in _HOP
        }
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            headers=response_headers,
            background=BackgroundTask(response.aclose),
        )

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]
    return Starlette(
        routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan
    )


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a busy port is a clear error up front."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class ProxyThread:
    """Runs the proxy with uvicorn in a background thread (no signal handlers there)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        self._sock = sock
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server: uvicorn.Server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
            name="run-local-proxy",
        )

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self, timeout: float = 10.0) -> None:
        import time

        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the local proxy did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
