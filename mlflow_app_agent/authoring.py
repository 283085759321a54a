"""Authoring: the :class:`Agent` object, its invoke/stream decorators, and the adapter that
lets an ``mlflow.pyfunc.ResponsesAgent`` be used wherever an ``Agent`` is.

An agent needs one of the two methods; the other is derived:

* invoke from stream: the ``response.output_item.done`` events' items, in order;
* stream from invoke: one ``response.output_item.done`` event per output item.

Every method here returns plain JSON-ready dicts; whether they satisfy MLflow's pydantic
models is checked by :mod:`mlflow_app_agent.signature`, not here.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from mlflow_app_agent.agent_config import NOT_BOUND, config_scope
from mlflow_app_agent.bridges import iterate_async_gen, run_coroutine, threaded_iter
from mlflow_app_agent.errors import AgentDefinitionError
from mlflow_app_agent.extensions import AgentExtensions, ExtensionsMixin, extensions_of
from mlflow_app_agent.shapes import (  # noqa: F401  (importable from here too)
    DONE_EVENT,
    TEXT_DELTA_EVENT,
    describe_validation_error,
    dump,
    reduce_stream,
    response_to_events,
    to_request,
)

if TYPE_CHECKING:
    import anyio
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentRequest

InvokeFn = Callable[[Any], Any]
StreamFn = Callable[[Any], Any]


class Agent(ExtensionsMixin):
    """An agent made of plain functions.

    >>> agent = Agent("echo")
    >>> @agent.invoke_method
    ... def invoke(request):
    ...     return {"output": [...]}

    Functions may be sync or async; a stream function may be a sync or async generator.
    Calling the agent object invokes it, so ``mlflow.models.set_model(agent)`` works in
    a models-from-code file. Server extensions (extra routes, middleware, start-up and
    shutdown hooks) are declared on it too: see :mod:`mlflow_app_agent.extensions`.
    """

    def __init__(self, name: str = "agent", *, description: str | None = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise AgentDefinitionError("Agent name must be a non-empty string")
        self.name = name
        self.description = description
        self._invoke_fn: InvokeFn | None = None
        self._stream_fn: StreamFn | None = None
        # The object this agent was adapted from (a ResponsesAgent), if any.
        self.source: Any = None
        self.server_extensions = AgentExtensions()
        # The model configuration its calls see through get_config() (set by the loader);
        # NOT_BOUND: whatever configuration is active where it is called.
        self._model_config: Any = NOT_BOUND

    def bind_model_config(self, base: Mapping[str, Any] | None) -> None:
        """Make ``base`` (the configuration stored with the model) what :func:`get_config`
        returns inside this agent's invoke/stream calls, in whatever thread or task they run.
        The loader calls it; no process-wide state is changed."""
        from mlflow_app_agent.agent_config import freeze_config

        self._model_config = freeze_config(base)

    @property
    def model_config(self) -> dict[str, Any] | None:
        """The bound model configuration (a copy), or None."""
        import copy

        bound = self._model_config
        return None if bound is NOT_BOUND or bound is None else copy.deepcopy(bound)

    # --- decorators ------------------------------------------------------------------------

    def invoke_method(self, fn: InvokeFn) -> InvokeFn:
        """Register ``fn(request) -> ResponsesAgentResponse | dict`` (sync or async)."""
        if not callable(fn):
            raise AgentDefinitionError("@invoke_method must decorate a function")
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise AgentDefinitionError(
                f"{fn.__name__} is a generator: decorate it with @stream_method, not @invoke_method"
            )
        self._invoke_fn = fn
        return fn

    def stream_method(self, fn: StreamFn) -> StreamFn:
        """Register a (sync or async) generator ``fn(request)`` of stream events."""
        if not callable(fn):
            raise AgentDefinitionError("@stream_method must decorate a function")
        if not (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):
            if not getattr(fn, "__mlflow_app_agent_stream__", False):
                raise AgentDefinitionError(
                    f"{getattr(fn, '__name__', fn)!r} must be a generator (use 'yield') to be "
                    "a @stream_method"
                )
        self._stream_fn = fn
        return fn

    # --- introspection ------------------------------------------------------------------

    @property
    def native_interfaces(self) -> tuple[str, ...]:
        """The methods the author wrote (the others are derived)."""
        return tuple(
            name
            for name, fn in (("invoke", self._invoke_fn), ("stream", self._stream_fn))
            if fn is not None
        )

    @property
    def interfaces(self) -> tuple[str, ...]:
        return ("invoke", "stream") if self.native_interfaces else ()

    @property
    def invoke_is_async(self) -> bool:
        fn = self._invoke_fn
        return fn is not None and inspect.iscoroutinefunction(fn)

    @property
    def stream_is_async(self) -> bool:
        fn = self._stream_fn
        return fn is not None and inspect.isasyncgenfunction(fn)

    def check(self) -> None:
        # on every call: no tuples built, the route checks only when there are routes
        if self._invoke_fn is None and self._stream_fn is None:
            raise AgentDefinitionError(
                f"Agent {self.name!r} has neither an @invoke_method nor a @stream_method"
            )
        if self.server_extensions.routes:
            self.server_extensions.check()

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, interfaces={list(self.native_interfaces)})"

    def __call__(self, request: Any) -> dict[str, Any]:
        return self.invoke(request)

    # --- synchronous use (notebooks, pyfunc) -------------------------------------------

    def _scope(self) -> Any:
        return config_scope(self._model_config)

    def _scoped(self, events: Iterator[Any]) -> Iterator[Any]:
        # Each step runs with the model configuration active, in whichever thread drives it,
        # and nothing is left set between steps (the consumer's context is its own).
        try:
            while True:
                with self._scope():
                    try:
                        event = next(events)
                    except StopIteration:
                        return
                yield event
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                with self._scope():
                    close()

    def invoke(self, request: Any) -> dict[str, Any]:
        """Answer ``request`` (dict or ResponsesAgentRequest) with a response dict."""
        with self._scope():
            return self._invoke(request)

    def _invoke(self, request: Any) -> dict[str, Any]:
        self.check()
        req = to_request(request)
        if self._invoke_fn is not None:
            if self.invoke_is_async:
                return dump(run_coroutine(self._invoke_fn(req)))
            return dump(self._invoke_fn(req))
        return reduce_stream(list(self._iter_stream(req)))

    def stream(self, request: Any) -> Iterator[dict[str, Any]]:
        """Yield stream event dicts for ``request``."""
        self.check()
        req = to_request(request)
        return self._scoped(self._iter_stream(req))

    def _iter_stream(self, req: ResponsesAgentRequest) -> Iterator[dict[str, Any]]:
        if self._stream_fn is None:
            yield from response_to_events(self.invoke(req))
            return
        if self.stream_is_async:
            for event in iterate_async_gen(self._stream_fn(req)):
                yield dump(event)
            return
        for event in self._stream_fn(req):
            yield dump(event)

    # --- asynchronous use (the server) --------------------------------------------------

    async def ainvoke(
        self, request: Any, *, limiter: anyio.CapacityLimiter | None = None
    ) -> dict[str, Any]:
        """Async invoke: async functions run on the loop, sync ones in a worker thread."""
        with self._scope():  # worker threads get a copy of this context
            return await self._ainvoke(request, limiter=limiter)

    async def _ainvoke(
        self, request: Any, *, limiter: anyio.CapacityLimiter | None = None
    ) -> dict[str, Any]:
        import anyio.to_thread

        self.check()
        req = to_request(request)
        if self._invoke_fn is not None:
            if self.invoke_is_async:
                return dump(await self._invoke_fn(req))
            fn = self._invoke_fn
            # abandon_on_cancel: a timeout (or disconnect) returns at once; the thread finishes
            # on its own (it cannot be interrupted) and its result is dropped.
            result = await anyio.to_thread.run_sync(
                fn, req, limiter=limiter, abandon_on_cancel=True
            )
            return dump(result)
        return reduce_stream([event async for event in self.astream(req, limiter=limiter)])

    async def astream(
        self, request: Any, *, limiter: anyio.CapacityLimiter | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Async stream. A sync generator runs in one worker thread that hands events over in
        batches; closing this iterator (e.g. on client disconnect) closes the generator."""
        self.check()
        req = to_request(request)
        events = self._astream(req, limiter=limiter)
        try:
            while True:
                with self._scope():  # per step: set and reset in the consumer's task
                    try:
                        event = await events.__anext__()
                    except StopAsyncIteration:
                        return
                yield event
        finally:
            with self._scope():
                await events.aclose()

    async def _astream(
        self, req: ResponsesAgentRequest, *, limiter: anyio.CapacityLimiter | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        if self._stream_fn is None:
            for event in response_to_events(await self.ainvoke(req, limiter=limiter)):
                yield event
            return
        if self.stream_is_async:
            agen = self._stream_fn(req)
            try:
                async for event in agen:
                    yield dump(event)
            finally:
                await agen.aclose()
            return
        events = threaded_iter(self._stream_fn(req), limiter=limiter)
        try:
            async for event in events:
                yield dump(event)
        finally:
            # Close now (stops and closes the sync generator), not whenever GC runs.
            await events.aclose()


def as_agent(obj: Any) -> Agent:
    """Accept an :class:`Agent`, an ``mlflow.pyfunc.ResponsesAgent`` instance, or a
    ResponsesAgent subclass (instantiated without arguments)."""
    if isinstance(obj, Agent):
        obj.check()
        return obj
    responses_agent_cls = loaded_responses_agent_class()
    if responses_agent_cls is not None:
        if isinstance(obj, type) and issubclass(obj, responses_agent_cls):
            obj = obj()
        if isinstance(obj, responses_agent_cls):
            agent = from_responses_agent(obj)  # type: ignore[arg-type]
            agent.check()
            return agent
    raise AgentDefinitionError(
        "expected a mlflow_app_agent.Agent, an mlflow.pyfunc.ResponsesAgent, or a path to a "
        f"Python file defining one; got {type(obj).__name__}"
    )


def _responses_agent_class() -> type:
    from mlflow.pyfunc import ResponsesAgent

    return ResponsesAgent


def loaded_responses_agent_class() -> type | None:
    """``mlflow.pyfunc.ResponsesAgent`` if ``mlflow.pyfunc`` is imported, else None: an
    object can only be a ResponsesAgent once it is, and importing it here would import
    pandas, which the lean app runtime does not install."""
    import sys

    pyfunc = sys.modules.get("mlflow.pyfunc")
    cls = getattr(pyfunc, "ResponsesAgent", None) if pyfunc is not None else None
    return cls if isinstance(cls, type) else None


def from_responses_agent(responses_agent: ResponsesAgent, name: str | None = None) -> Agent:
    """Wrap a ResponsesAgent: its ``predict`` is invoke; ``predict_stream`` if overridden."""
    cls = type(responses_agent)
    base = _responses_agent_class()
    agent = Agent(name or cls.__name__)
    agent.source = responses_agent
    agent.server_extensions = extensions_of(responses_agent)
    agent.invoke_method(responses_agent.predict)
    if getattr(cls, "predict_stream", None) is not getattr(base, "predict_stream", None):
        stream = responses_agent.predict_stream
        if not (inspect.isgeneratorfunction(stream) or inspect.isasyncgenfunction(stream)):
            # MLflow's tracing decorator wraps predict_stream; it still returns a generator.
            stream.__func__.__mlflow_app_agent_stream__ = True  # type: ignore[attr-defined]
        agent.stream_method(stream)
    return agent
