"""Requests still running when uvicorn's graceful shutdown ends: uvicorn cancels their tasks.
The caller gets a structured ending, not a cut connection, and the log no traceback."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from mlflow_app_agent.server import create_app

from . import agents


def _scope(path: str) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
            "root_path": "", "query_string": b"", "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")]}


async def _cancelled_mid_request(agent: Any, path: str, body: dict[str, Any],
                                 cancel_when: Any) -> list[dict[str, Any]]:
    app = create_app(agent, tracing=False)
    sent: list[dict[str, Any]] = []
    progressed = asyncio.Event()
    never = asyncio.Event()
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": json.dumps(body).encode(),
                    "more_body": False}
        await never.wait()  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if cancel_when(sent):
            progressed.set()

    task = asyncio.ensure_future(app(_scope(path), receive, send))
    await asyncio.wait_for(progressed.wait(), 30)
    task.cancel()  # what uvicorn does once timeout_graceful_shutdown has passed
    await asyncio.wait_for(task, 10)  # ends normally: no "Exception in ASGI application"
    return sent


def _sse_data(body: bytes) -> list[str]:
    """The data of each SSE event in ``body`` (parsed by httpx-sse)."""
    from httpx_sse import EventSource

    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    return [sse.data for sse in EventSource(response).iter_sse()]


def _bodies(sent: list[dict[str, Any]]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


@pytest.mark.parametrize("agent", [agents.endless, agents.endless_async])
def test_a_stream_cut_by_shutdown_ends_with_an_error_event_and_done(
        agent: Any, caplog: pytest.LogCaptureFixture, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENDLESS_MARKER", str(tmp_path / "closed"))
    sent = asyncio.run(_cancelled_mid_request(
        agent, "/invocations", {"input": [{"role": "user", "content": "x"}], "stream": True},
        lambda s: len(_bodies(s).split(b"\n\n")) > 3))
    assert sent[0]["status"] == 200
    frames = _sse_data(_bodies(sent))
    assert frames[-1] == "[DONE]"
    error = json.loads(frames[-2])
    assert error["type"] == "error" and error["code"] == "shutdown"
    assert "shutting down" in error["message"]
    assert sent[-1].get("more_body") is False
    assert (tmp_path / "closed").read_text() == "closed"  # the agent's generator was closed
    assert not any(r.exc_info for r in caplog.records)


def test_an_invoke_cut_by_shutdown_gets_a_503(caplog: pytest.LogCaptureFixture) -> None:
    sent = asyncio.run(_invoke_cut())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 503
    err = json.loads(_bodies(sent))["error"]
    assert err["code"] == "shutdown" and "shutting down" in err["message"]
    assert not any(r.exc_info for r in caplog.records)


async def _invoke_cut() -> list[dict[str, Any]]:
    # Nothing is sent before the answer, so cancel on a timer instead of on progress.
    app = create_app(agents.slow, tracing=False)
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "more_body": False,
                    "body": b'{"input": [{"role": "user", "content": "3"}]}'}
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.ensure_future(app(_scope("/invocations"), receive, send))
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.wait_for(task, 10)
    return sent


_SERVER = """
import sys
import uvicorn
sys.path.insert(0, {tests!r})
from server import agents
from mlflow_app_agent.server import create_app
uvicorn.run(create_app(agents.endless, tracing=False), host="127.0.0.1", port={port},
            timeout_graceful_shutdown=1, log_level="info")
"""


@pytest.mark.e2e
def test_sigterm_during_a_stream_still_ends_it(tmp_path: Any) -> None:
    # On a signal uvicorn exits right after the lifespan shutdown; the app must let the
    # cancelled stream write its ending before that.
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    from .conftest import free_port

    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(tests=str(Path(__file__).parents[1]), port=port)],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "ENDLESS_MARKER": str(tmp_path / "closed")})
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        from httpx_sse import connect_sse

        frames: list[str] = []
        with httpx.Client(timeout=20) as client, connect_sse(
                client, "POST", f"http://127.0.0.1:{port}/invocations",
                json={"input": [{"role": "user", "content": "x"}], "stream": True}) as source:
            for sse in source.iter_sse():
                frames.append(sse.data)
                if len(frames) == 3:
                    proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert frames[-1] == "[DONE]", text
    assert json.loads(frames[-2])["code"] == "shutdown"
    assert (tmp_path / "closed").read_text() == "closed"
    assert "Traceback" not in text and "Exception in ASGI application" not in text
