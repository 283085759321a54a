"""What ``check_agent`` validates: an in-process agent, a model URI, or a running server.

Every target answers ``invoke`` and ``stream`` with bounded effort: a call that does not
finish within ``timeout`` seconds, or a stream longer than ``max_events``, is reported as a
problem instead of hanging the check. Problems are raised as
:class:`~mlflow_app_agent.errors.ValidationFailure`, so the same targets work inside a user's
own hypothesis properties (see the ``agent_target`` pytest fixture).
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlflow_app_agent.errors import ValidationFailure

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_EVENTS = 10_000


@dataclasses.dataclass
class StreamResult:
    """The events of one stream; ``problem`` says why it is incomplete (if it is)."""

    events: list[Any]
    ended: bool
    problem: str | None = None


@dataclasses.dataclass
class RawResponse:
    status: int
    content_type: str
    text: str


class Target:
    """Base class: ``invoke``/``stream`` a request dict; servers also take raw bodies."""

    description: str = "agent"
    is_server: bool = False
    endpoints: tuple[str | None, ...] = (None,)

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, max_events: int = DEFAULT_MAX_EVENTS):
        self.timeout = timeout
        self.max_events = max_events

    def invoke(self, request: Any, *, endpoint: str | None = None) -> Any:
        raise NotImplementedError

    def stream(self, request: Any, *, endpoint: str | None = None) -> StreamResult:
        raise NotImplementedError

    def post_raw(self, body: bytes, content_type: str | None, *, endpoint: str | None = None
                 ) -> RawResponse:  # fmt: skip
        raise ValidationFailure(f"{self.description} is not a server; it takes no raw bodies")

    def close(self) -> None:
        """Release connections (servers); in-process targets hold nothing."""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class AgentTarget(Target):
    """An in-process :class:`~mlflow_app_agent.Agent` (or anything ``as_agent`` accepts)."""

    def __init__(self, agent: Any, *, description: str | None = None, **kwargs: Any) -> None:
        from mlflow_app_agent.authoring import as_agent

        super().__init__(**kwargs)
        self.agent = as_agent(agent)
        self.description = description or f"agent {self.agent.name!r}"
        # Set once a call hangs: later calls fail at once instead of each waiting `timeout`.
        self._stuck: str | None = None

    def _check_not_stuck(self) -> None:
        if self._stuck is not None:
            raise ValidationFailure(self._stuck)

    def _mark_stuck(self, what: str, request: Any) -> None:
        shown = json.dumps(request, default=repr)[:300]
        self._stuck = (
            f"not run: an earlier {what} did not return within {self.timeout:g} s "
            f"(on request {shown})"
        )

    def invoke(self, request: Any, *, endpoint: str | None = None) -> Any:
        self._check_not_stuck()
        box: queue.Queue[tuple[bool, Any]] = queue.Queue()

        def run() -> None:
            try:
                box.put((True, self.agent.invoke(request)))
            except BaseException as exc:  # reported to the caller, not lost in the thread
                box.put((False, exc))

        _start(run, "invoke")
        try:
            ok, value = box.get(timeout=self.timeout)
        except queue.Empty:
            self._mark_stuck("invoke", request)
            raise ValidationFailure(f"invoke did not return within {self.timeout:g} s") from None
        if not ok:
            raise value
        return value

    def stream(self, request: Any, *, endpoint: str | None = None) -> StreamResult:
        self._check_not_stuck()
        # Bounded, so an endless generator cannot fill memory before the cap is noticed.
        handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1024)
        stop = threading.Event()

        def run() -> None:
            try:
                gen = self.agent.stream(request)
                try:
                    for event in gen:
                        while not stop.is_set():
                            try:
                                handoff.put(("event", event), timeout=0.05)
                                break
                            except queue.Full:
                                continue
                        if stop.is_set():
                            return
                finally:
                    close = getattr(gen, "close", None)
                    if close is not None:
                        close()
                handoff.put(("end", None))
            except BaseException as exc:
                handoff.put(("error", exc))

        _start(run, "stream")
        result = _collect(_drain(handoff, self.timeout), self.max_events, self.timeout, stop)
        if result.problem and result.problem.startswith("stream did not end within"):
            self._mark_stuck("stream", request)
        return result


def _start(fn: Callable[[], None], what: str) -> None:
    # A daemon thread: an agent that never returns must not keep the process alive. It runs
    # in a copy of the caller's context, so e.g. ``use_request_context(...)`` around a check
    # reaches the agent.
    ctx = contextvars.copy_context()
    thread = threading.Thread(
        target=ctx.run, args=(fn,), name=f"mlflow-app-agent-check-{what}", daemon=True
    )
    thread.start()


def _drain(handoff: queue.Queue[tuple[str, Any]], timeout: float) -> Iterator[tuple[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        try:
            kind, value = handoff.get(timeout=max(remaining, 0.001))
        except queue.Empty:
            yield ("timeout", None)
            return
        yield kind, value
        if kind != "event":
            return


def _collect(
    items: Iterator[tuple[str, Any]], max_events: int, timeout: float,
    stop: threading.Event | None = None,
) -> StreamResult:  # fmt: skip
    events: list[Any] = []
    try:
        for kind, value in items:
            if kind == "event":
                events.append(value)
                if len(events) >= max_events:
                    return StreamResult(events, False, f"stream did not end after {max_events} "
                                        "events (an endless stream?)")  # fmt: skip
            elif kind == "end":
                return StreamResult(events, True)
            elif kind == "error":
                if isinstance(value, ValidationFailure):
                    return StreamResult(events, False, value.message)
                return StreamResult(events, False, f"stream raised {type(value).__name__}: {value}")
            elif kind == "timeout":
                return StreamResult(events, False, f"stream did not end within {timeout:g} s")
        return StreamResult(events, False, "stream stopped without an end")
    finally:
        if stop is not None:
            stop.set()


class ModelTarget(AgentTarget):
    """Any model location (``models:/name/1``, ``models:/name@alias``, ``runs:/…``, a local
    model / materialized app directory, ``agent.py[:name]``), loaded in process with
    ``load_agent``."""

    def __init__(self, model_uri: str | Path, **kwargs: Any) -> None:
        from mlflow_app_agent.model.load import load_agent

        loaded = load_agent(model_uri)
        desc = str(model_uri)
        if loaded.registered_name and loaded.registered_version:
            desc += f" ({loaded.registered_name} version {loaded.registered_version})"
        self.loaded = loaded
        super().__init__(loaded.agent, description=desc, **kwargs)


class ServerTarget(Target):
    """An agent server at ``url`` speaking our (and MLflow's) HTTP contract."""

    is_server = True

    def __init__(self, url: str, *, endpoints: tuple[str, ...] = ("/invocations", "/responses"),
                 headers: dict[str, str] | None = None, **kwargs: Any) -> None:  # fmt: skip
        import httpx

        super().__init__(**kwargs)
        self.url = url.rstrip("/")
        self.description = f"server {self.url}"
        self.endpoints = endpoints
        self._client = httpx.Client(base_url=self.url, timeout=self.timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def _path(self, endpoint: str | None) -> str:
        return endpoint or self.endpoints[0] or "/invocations"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ValidationFailure(
                f"{method} {path} got no answer within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise ValidationFailure(
                f"{method} {path} failed: {type(exc).__name__}: {exc}"
            ) from None

    def ping(self) -> None:
        """Fail early and clearly if nothing listens at the URL, and keep only the agent
        endpoints the server has (``mlflow models serve`` has no ``/responses``)."""
        hello = {"input": [{"role": "user", "content": "Hello!"}]}
        found = []
        for path in self.endpoints:
            assert path is not None
            resp = self._request("POST", path, json=hello)
            if resp.status_code not in (404, 405):
                found.append(path)
        if not found:
            raise ValidationFailure(
                f"{self.url} has no agent endpoint: POST "
                + " and ".join(str(p) for p in self.endpoints)
                + " answered 404/405"
            )
        self.endpoints = tuple(found)

    def invoke(self, request: Any, *, endpoint: str | None = None) -> Any:
        path = self._path(endpoint)
        resp = self._request("POST", path, json=request)
        if resp.status_code != 200:
            raise ValidationFailure(f"POST {path} answered {resp.status_code}: {_clip(resp.text)}")
        try:
            return resp.json()
        except ValueError:
            raise ValidationFailure(f"POST {path} answered non-JSON: {_clip(resp.text)}") from None

    def stream(self, request: Any, *, endpoint: str | None = None) -> StreamResult:
        import httpx

        path = self._path(endpoint)
        body = {**request, "stream": True} if isinstance(request, dict) else request
        headers = {"accept": "text/event-stream"}
        try:
            with self._client.stream("POST", path, json=body, headers=headers) as resp:
                if resp.status_code != 200:
                    resp.read()
                    return StreamResult([], False, f"POST {path} (stream) answered "
                                        f"{resp.status_code}: {_clip(resp.text)}")  # fmt: skip
                ctype = resp.headers.get("content-type", "")
                if not ctype.startswith("text/event-stream"):
                    resp.read()
                    return StreamResult([], False, f"POST {path} (stream) answered {ctype!r} "
                                        f"instead of text/event-stream: {_clip(resp.text)}")  # fmt: skip
                return _collect(_sse_events(resp, self.timeout), self.max_events, self.timeout)
        except httpx.TimeoutException:
            return StreamResult([], False, f"stream did not end within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return StreamResult([], False, f"stream failed: {type(exc).__name__}: {exc}")

    def post_raw(self, body: bytes, content_type: str | None, *, endpoint: str | None = None
                 ) -> RawResponse:  # fmt: skip
        path = self._path(endpoint)
        headers = {"content-type": content_type} if content_type else {}
        resp = self._request("POST", path, content=body, headers=headers)
        return RawResponse(resp.status_code, resp.headers.get("content-type", ""), resp.text)


def _sse_events(resp: Any, timeout: float) -> Iterator[tuple[str, Any]]:
    """(kind, value) pairs from an SSE response (parsed by ``httpx-sse``): parsed ``data``
    frames, then ``end`` at ``data: [DONE]``; ``timeout`` bounds the whole stream, not just
    each read (keep-alive comments included)."""
    from httpx_sse import EventSource

    source = EventSource(_Bounded(resp, time.monotonic() + timeout))  # type: ignore[arg-type]
    try:
        for sse in source.iter_sse():
            if not sse.data:
                continue  # event:/id:/retry: fields without data
            if sse.data == "[DONE]":
                yield ("end", None)
                return
            try:
                yield ("event", json.loads(sse.data))
            except ValueError:
                yield ("error", ValidationFailure(f"stream frame is not JSON: {_clip(sse.data)}"))
                return
    except _PastDeadline:
        yield ("timeout", None)
        return
    yield ("error", ValidationFailure("stream closed without a final 'data: [DONE]' frame"))


class _PastDeadline(Exception):
    pass


class _Bounded:
    """The response as ``EventSource`` reads it, raising :class:`_PastDeadline` when a chunk
    (an event or a keep-alive) arrives after ``deadline``."""

    def __init__(self, resp: Any, deadline: float) -> None:
        self._resp, self._deadline = resp, deadline

    @property
    def headers(self) -> Any:
        return self._resp.headers

    def iter_text(self) -> Iterator[str]:
        for text in self._resp.iter_text():
            if time.monotonic() > self._deadline:
                raise _PastDeadline
            yield text


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more chars)"


def resolve_target(target: Any, **kwargs: Any) -> Target:
    """A :class:`Target` for an Agent/ResponsesAgent, an ``http(s)://`` URL, an agent file
    (``agent.py`` or ``agent.py:name``), or a model URI or directory."""
    if isinstance(target, Target):
        return target
    if isinstance(target, (str, Path)):
        text = str(target)
        if text.startswith(("http://", "https://")):
            return ServerTarget(text, **kwargs)
        # any model location, an agent file included (loaded the way the server loads one)
        return ModelTarget(text, **kwargs)
    return AgentTarget(target, **kwargs)
