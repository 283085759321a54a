"""Server-sent events for agent streams, as a plain ASGI response.

* The first event is pulled before the status line is sent, so an agent that fails at once
  gets a real 4xx/5xx JSON error instead of ``200`` + an error frame.
* Later failures (and timeouts) become one ``error`` event, then ``data: [DONE]``.
* Frames are coalesced: while the socket is busy, events pile up and go out in one write,
  so a fast generator costs one send per batch rather than per event.
* A client disconnect cancels the pump and closes the agent's iterator (and with it the
  agent's generator, also a sync one running in a worker thread).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from mlflow_app_agent.authoring import reduce_stream
from mlflow_app_agent.context import RequestContext, reset_request_context, set_request_context
from mlflow_app_agent.server.errors import (
    ErrorPolicy,
    request_timeout_error,
    shutdown_error,
    to_app_error,
)
from mlflow_app_agent.server.metrics import RequestRecord
from mlflow_app_agent.server.tracing import HEADER_TRACE_ID, RequestSpan

logger = logging.getLogger("mlflow_app_agent.server")

DONE_FRAME = b"data: [DONE]\n\n"
_MAX_PENDING = 512  # frames buffered before the pump waits for the socket
_CLOSE_GRACE = 5.0  # seconds cleanup may wait for the agent's generator to close

Send = Callable[[dict[str, Any]], Any]
Receive = Callable[[], Any]


def encode_frame(event: Any) -> bytes:
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


class EventShaper:
    """Turns agent events into wire events. This one passes them through (``/invocations``);
    :class:`mlflow_app_agent.server.openai_compat.ResponsesShaper` adds the OpenAI lifecycle."""

    def start(self) -> list[dict[str, Any]]:
        return []

    def event(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        return [event]

    def finish(self) -> list[dict[str, Any]]:
        return []

    def error(self, error: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"type": "error", **error, "error": error}]


class AgentEventStream:
    """ASGI app answering one streaming request."""

    def __init__(
        self,
        events: AsyncIterator[dict[str, Any]],
        *,
        shaper: EventShaper,
        span: RequestSpan,
        ctx: RequestContext,
        timeout: float,
        headers: dict[str, str],
        errors: ErrorPolicy | None = None,
        secrets: tuple[str, ...] = (),
        record: RequestRecord | None = None,
    ) -> None:
        self._rec = record
        self._events = events
        self._shaper = shaper
        self._span = span
        self._ctx = ctx
        self._timeout = timeout
        self._headers = headers
        self._errors = errors or ErrorPolicy()
        self._secrets = secrets
        self._collected: list[dict[str, Any]] = []
        self.closed_by_client = False
        self._started = False

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        token = set_request_context(self._ctx)
        deadline = anyio.current_time() + self._timeout if self._timeout else None
        try:
            with self._span:
                rec = self._rec
                if rec is not None and self._span.active:
                    rec.trace_id, rec.span_id = self._span.trace_id, self._span.span_id
                await self._run(receive, send, deadline)
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when its graceful shutdown ends (the generator
            # is closed by then): end the stream properly instead of cutting it.
            await self._end_cut_short(send)
        finally:
            reset_request_context(token)

    async def _end_cut_short(self, send: Send) -> None:
        err = shutdown_error()
        logger.warning("request %s: %s", self._ctx.request_id, err.message)
        if self._rec is not None:
            self._rec.code = err.code
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
            try:
                if not self._started:
                    await self._send_error_response(send, err)
                    return
                _, body = self._errors.payload(err, self._ctx.request_id)
                frames = [encode_frame(e) for e in self._shaper.error(body["error"])]
                await send({"type": "http.response.body", "body": b"".join(frames) + DONE_FRAME,
                            "more_body": False})
            except Exception:  # the connection is already gone
                pass

    async def _run(self, receive: Receive, send: Send, deadline: float | None) -> None:
        first: dict[str, Any] | None = None
        waiting = anyio.CancelScope()
        try:
            with anyio.fail_after(_remaining(deadline)) as waiting:
                first = await self._events.__anext__()
            if self._rec is not None:
                self._rec.ttfe = time.perf_counter() - self._rec.start
        except StopAsyncIteration:
            first = None
        except Exception as exc:
            await self._close_events()
            await self._send_error_response(send, self._timeout_or(exc, waiting))
            return
        self._started = True
        if self._rec is not None:
            self._rec.status = 200
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": _raw_headers(
                    {
                        **self._headers,
                        **self._trace_header(),
                        "content-type": "text/event-stream; charset=utf-8",
                        "cache-control": "no-cache",
                        "x-accel-buffering": "no",
                    }
                ),
            }
        )
        pending: list[bytes] = [encode_frame(e) for e in self._shaper.start()]
        if first is not None:
            pending.extend(self._frames(first))
        try:
            async with anyio.create_task_group() as tg:
                pump = _Pump(send, pending, self._rec)
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope, pump)
                tg.start_soon(pump.sender)
                await self._produce(pump, deadline, first is None)
                await pump.finished()
                tg.cancel_scope.cancel()
        finally:
            await self._close_events()
            if self._span.active:
                self._span.set_outputs(reduce_stream(self._collected))

    async def _produce(self, pump: _Pump, deadline: float | None, exhausted: bool) -> None:
        streaming = anyio.CancelScope()
        try:
            if not exhausted:
                with anyio.fail_after(_remaining(deadline)) as streaming:
                    async for event in self._events:
                        await pump.put(self._frames(event))
            await pump.put([encode_frame(e) for e in self._shaper.finish()])
        except Exception as exc:
            err = self._timeout_or(exc, streaming)
            self._errors.log(err, self._ctx.request_id, self._secrets)
            _, body = self._errors.payload(err, self._ctx.request_id, self._secrets)
            self._span.set_error(body["error"]["code"],
                                 self._errors.trace_message(to_app_error(err), self._secrets))
            if self._rec is not None:
                self._rec.code = body["error"]["code"]
            await pump.put([encode_frame(e) for e in self._shaper.error(body["error"])])
        await pump.put([DONE_FRAME], last=True)

    def _trace_header(self) -> dict[str, str]:
        trace_id = self._span.trace_id
        return {HEADER_TRACE_ID: trace_id} if trace_id else {}

    def _timeout_or(self, exc: BaseException, scope: anyio.CancelScope) -> BaseException:
        """Our deadline (the scope fired) is a ``timeout``; an agent's own TimeoutError is
        an agent error like any other exception it raises."""
        if isinstance(exc, TimeoutError) and scope.cancel_called:
            return request_timeout_error(self._timeout)
        return exc

    def _frames(self, event: dict[str, Any]) -> list[bytes]:
        if self._rec is not None:
            self._rec.events += 1
        if self._span.active:
            self._collected.append(event)
        return [encode_frame(e) for e in self._shaper.event(event)]

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope,
                                pump: _Pump) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if pump.complete:  # uvicorn reports a disconnect once the response is sent
                    return
                self.closed_by_client = True
                if self._rec is not None:
                    self._rec.disconnected = True
                scope.cancel()
                return

    async def _close_events(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        if aclose is None:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
            try:
                await aclose()
            except Exception:
                logger.warning("closing the agent's stream failed", exc_info=True)

    async def _send_error_response(self, send: Send, exc: BaseException) -> None:
        self._errors.log(exc, self._ctx.request_id, self._secrets)
        status, payload = self._errors.payload(exc, self._ctx.request_id, self._secrets)
        self._span.set_error(payload["error"]["code"],
                             self._errors.trace_message(to_app_error(exc), self._secrets))
        body = json.dumps(payload).encode()
        if self._rec is not None:
            self._rec.status, self._rec.code = status, payload["error"]["code"]
            self._rec.bytes_out += len(body)
        headers = {**self._headers, **self._trace_header(), "content-type": "application/json"}
        await send({"type": "http.response.start", "status": status, "headers": _raw_headers(headers)})
        await send({"type": "http.response.body", "body": body})


class _Pump:
    """Frames produced by the agent side, written by a separate sender task in batches."""

    def __init__(self, send: Send, initial: list[bytes],
                 record: RequestRecord | None = None) -> None:
        self._send = send
        self._rec = record
        self._buf: list[bytes] = list(initial)
        self._ready = anyio.Event()
        self._drained = anyio.Event()
        self._done = anyio.Event()
        self._last = False
        if self._buf:
            self._ready.set()

    async def put(self, frames: list[bytes], *, last: bool = False) -> None:
        if frames:
            self._buf.extend(frames)
        if last:
            self._last = True
        self._ready.set()
        if len(self._buf) > _MAX_PENDING:
            self._drained = anyio.Event()
            await self._drained.wait()

    async def sender(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            batch, self._buf = self._buf, []
            last = self._last
            self._drained.set()
            if batch:
                chunk = b"".join(batch)
                if self._rec is not None:
                    self._rec.bytes_out += len(chunk)
                await self._send(
                    {"type": "http.response.body", "body": chunk, "more_body": not last}
                )
            elif last:
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            if last:
                self._done.set()
                return

    async def finished(self) -> None:
        await self._done.wait()

    @property
    def complete(self) -> bool:
        """The last frame was handed to the server."""
        return self._done.is_set()


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(deadline - anyio.current_time(), 0.0)




def _raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
