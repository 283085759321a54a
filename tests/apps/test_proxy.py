from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from mlflow_app_agent.apps.local import proxy

RELEASE = threading.Event()


async def headers(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse(
        {"headers": dict(request.headers), "body": body.decode(), "query": request.url.query},
        status_code=201, headers={"x-upstream": "yes"},
    )


async def sse(_request: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        yield b"data: first\n\n"
        # the second event waits until the client has seen the first: no buffering allowed
        released = await asyncio.to_thread(RELEASE.wait, 10)
        yield b"data: second\n\n" if released else b"data: timeout\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def serve(app: object) -> proxy.ProxyThread:
    runner = proxy.ProxyThread(app, proxy.bind("127.0.0.1", 0))
    runner.start()
    return runner


@pytest.fixture
def upstream() -> Iterator[str]:
    app = Starlette(routes=[
        Route("/headers", headers, methods=["GET", "POST"]), Route("/sse", sse)])
    runner = serve(app)
    yield f"http://127.0.0.1:{runner.port}"
    runner.stop()


def front(upstream: str, identity: proxy.Identity) -> proxy.ProxyThread:
    return serve(proxy.create_proxy_app(upstream, identity))


def test_sets_the_apps_headers_and_drops_spoofed_ones(upstream: str) -> None:
    runner = front(upstream, proxy.Identity(email="ada@example.com"))
    try:
        url = f"http://127.0.0.1:{runner.port}"
        r = httpx.post(f"{url}/headers?x=1", content=b"payload", headers={
            "X-Forwarded-Email": "mallory@example.com", "X-Request-Id": "chosen-by-client",
            "X-Forwarded-Access-Token": "forged", "X-Custom": "kept"})
        assert r.status_code == 201 and r.headers["x-upstream"] == "yes"
        seen = r.json()
        h = seen["headers"]
        assert seen["body"] == "payload" and seen["query"] == "x=1"
        assert h["x-forwarded-email"] == "ada@example.com"
        assert h["x-forwarded-preferred-username"] == "ada@example.com"
        assert re.fullmatch(r"\d+@0", h["x-forwarded-user"])
        assert h["x-request-id"] != "chosen-by-client" and len(h["x-request-id"]) == 36
        assert h["x-real-ip"] == "127.0.0.1"
        assert h["x-forwarded-host"] == f"127.0.0.1:{runner.port}"
        assert "x-forwarded-access-token" not in h
        assert h["x-custom"] == "kept"
    finally:
        runner.stop()


def test_forwards_the_on_behalf_of_token_when_configured(upstream: str) -> None:
    runner = front(upstream, proxy.Identity(email="ada@example.com", access_token="user-tok"))
    try:
        h = httpx.get(f"http://127.0.0.1:{runner.port}/headers").json()["headers"]
        assert h["x-forwarded-access-token"] == "user-tok"
    finally:
        runner.stop()


def test_streams_server_sent_events_as_they_come(upstream: str) -> None:
    RELEASE.clear()
    runner = front(upstream, proxy.Identity(email="ada@example.com"))
    try:
        from httpx_sse import connect_sse

        data = []
        with httpx.Client(timeout=20) as client, connect_sse(
                client, "GET", f"http://127.0.0.1:{runner.port}/sse") as source:
            for sse in source.iter_sse():  # checks the content type too
                data.append(sse.data)
                if sse.data == "first":
                    RELEASE.set()  # the upstream sends "second" only once "first" arrived
        assert data == ["first", "second", "[DONE]"]
    finally:
        runner.stop()


def test_unreachable_app_is_a_502() -> None:
    port = proxy.bind("127.0.0.1", 0)
    dead = f"http://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    runner = front(dead, proxy.Identity(email="ada@example.com"))
    try:
        r = httpx.get(f"http://127.0.0.1:{runner.port}/ready")
        assert r.status_code == 502 and "not reachable" in r.text
    finally:
        runner.stop()
