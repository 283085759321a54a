"""The app factory. No module globals: everything an app needs hangs off ``app.state``."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlflow_app_agent._version import __version__
from mlflow_app_agent.errors import ConfigError, MlflowAppAgentError
from mlflow_app_agent.model.load import LoadedAgent
from mlflow_app_agent.server import logs, routes
from mlflow_app_agent.server.auth import request_id_from
from mlflow_app_agent.server.errors import error_body, shutdown_error
from mlflow_app_agent.server.extensions import (
    apply_app_factory,
    build_middleware_stack,
    install_routes,
    run_shutdown_hooks,
    run_startup_hooks,
)
from mlflow_app_agent.server.metrics import RequestRecord
from mlflow_app_agent.server.observe import (
    RECORD_KEY,
    Observer,
    RouteLabels,
    WireCounter,
    observing_send,
    record_of,
)
from mlflow_app_agent.server.openapi import install_openapi
from mlflow_app_agent.server.redact import request_secrets
from mlflow_app_agent.server.runtime import Runtime
from mlflow_app_agent.server.settings import ENV_APP_FACTORY, ENV_MODEL, ServerSettings
from mlflow_app_agent.server.source import resolve

logger = logging.getLogger("mlflow_app_agent.server")

# Seconds the lifespan shutdown waits for cancelled requests to send their last bytes; with
# uvicorn's 10 s grace this stays inside the 15 s Databricks Apps allows after SIGTERM.
_CUT_GRACE = 2.0
_UNSET = object()


def create_app(
    agent_or_model_uri: Any = None,
    *,
    settings: ServerSettings | None = None,
    **overrides: Any,
) -> FastAPI:
    """Build the server for one agent.

    ``agent_or_model_uri``: an :class:`~mlflow_app_agent.Agent`, an
    ``mlflow.pyfunc.ResponsesAgent``, a ``LoadedAgent``, a model URI (``models:/name/1``),
    a model or materialized app directory, or ``path/to/agent.py[:name]``; ``None`` reads
    ``MLFLOW_APP_AGENT_MODEL``. Locations load in a worker thread at start-up (``/ready``
    answers 503 until then). ``overrides`` are :class:`ServerSettings` fields, e.g.
    ``create_app(agent, require_auth=True, request_timeout=30)``.

    What this changes in the process (nothing else): one ``warnings`` filter that drops
    MLflow's per-request request-validation warnings (``mlflow.types.
    responses_helpers``); while a model is fetched from a tracking/registry server, MLflow's
    ``MLFLOW_HTTP_REQUEST_*`` variables the user did not set (the registry budget, see
    :mod:`mlflow_app_agent.registry_budget`); with tracing on, MLflow's trace exporter queue
    (see :mod:`mlflow_app_agent.server.trace_export`).
    """
    if agent_or_model_uri is None:
        agent_or_model_uri = os.environ.get(ENV_MODEL)
        if not agent_or_model_uri:
            raise ConfigError(
                f"no agent to serve: pass one to create_app or set {ENV_MODEL} to a model URI, "
                "directory or agent file"
            )
    if settings is None:
        settings = ServerSettings.from_env(**overrides)
    elif overrides:
        raise ConfigError("pass either settings= or individual setting overrides, not both")
    _quiet_request_warnings()
    runtime = Runtime(agent_or_model_uri, settings)
    from mlflow_app_agent.server.observe import install_telemetry

    telemetry = install_telemetry(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if isinstance(app, AgentApp):
            app.remember_clean_context()
        telemetry.start()
        logs.start_line(settings, agent_or_model_uri, telemetry.metrics is not None,
                        runtime.errors.redactor.location)
        runtime.start()
        try:
            yield
        finally:
            if isinstance(app, AgentApp):
                await app.finish_cut_requests()
            # the agent's shutdown hooks (if it was served) beside the trace flush
            await asyncio.gather(run_shutdown_hooks(runtime.extensions, app.state),
                                 runtime.shutdown())
            await telemetry.shutdown(app.state.observer if isinstance(app, AgentApp) else None)

    app = AgentApp(
        title="mlflow-app-agent server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.telemetry = telemetry
    app.state.observer = telemetry.observer
    app.observer = telemetry.observer
    # Plain Starlette routes: no dependency injection on the hot path, and a streaming
    # handler may return any ASGI callable.
    for path, endpoint in (("/invocations", routes.invocations), ("/responses", routes.responses)):
        app.router.add_route(path, endpoint, methods=["POST"])
    for path in ("/health", "/ping"):
        app.router.add_route(path, routes.health, methods=["GET"])
    app.router.add_route("/ready", routes.ready, methods=["GET"])
    app.router.add_route("/agent/info", routes.info, methods=["GET"])
    if telemetry.metrics is not None:
        app.router.add_route("/metrics", routes.metrics, methods=["GET"])
    _install_browser_routes(app, settings)
    _install_error_handlers(app)
    install_openapi(app)
    _apply_extensions(app, runtime)
    return app


def _apply_extensions(app: AgentApp, runtime: Runtime) -> None:
    """The agent's routes and middleware, once it is known: now for an agent object with no
    start-up hooks, else after the agent has loaded and its start-up hooks have run (so
    nothing is served half-configured)."""

    def install(served: LoadedAgent) -> None:
        extensions = served.agent.server_extensions
        if extensions:
            install_routes(app, extensions, served.agent.name)
            if extensions.middleware:
                app.extension_stack = build_middleware_stack(app.dispatch, extensions)

    async def activate(served: LoadedAgent) -> None:
        await run_startup_hooks(served.agent.server_extensions, app.state)
        install(served)

    if runtime.served is not None:
        install(runtime.served)
    else:
        runtime.on_loaded = activate


def _install_browser_routes(app: FastAPI, settings: ServerSettings) -> None:
    """``POST /feedback``, the chat page (unless ``ui=False``) and CORS (only for origins
    set explicitly: by default another site cannot make a signed-in browser call us)."""
    from mlflow_app_agent.server.ui import feedback

    app.router.add_route("/feedback", feedback.feedback, methods=["POST"])
    if settings.ui:
        from mlflow_app_agent.server.ui import install_ui

        install_ui(app)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        from starlette.middleware.cors import CORSMiddleware

        from mlflow_app_agent.server.tracing import HEADER_ALWAYS_TRACE, HEADER_TRACE_ID

        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["content-type", "x-request-id", HEADER_ALWAYS_TRACE],
                           expose_headers=["x-request-id", HEADER_TRACE_ID])


def _quiet_request_warnings() -> None:
    """MLflow's request types warn (rather than reject) on unknown values, e.g. "Invalid
    tool type: <the client's string>": in a server that is one stderr line per request,
    with caller-controlled text (log flooding and injection). Those requests are still
    served or refused as MLflow decides; only the warnings are dropped."""
    warnings.filterwarnings("ignore", category=UserWarning,
                            module=r"mlflow\.types\.responses_helpers")


class AgentApp(FastAPI):
    """FastAPI, plus a direct path to the two agent routes.

    The middleware stack (error, exception, telemetry, body-limit, exit-stack layers) costs
    ~10% of a small request; the agent handlers already turn every failure into the error
    contract, so while no user middleware is installed, POSTs to ``/invocations`` and
    ``/responses`` skip it. Everything else goes through FastAPI as usual."""

    _FAST = {"/invocations": routes.invocations, "/responses": routes.responses}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inflight: set[asyncio.Task[Any] | None] = set()  # agent calls on the fast path
        #: metrics + access log; None when both are off
        self.observer: Observer | None = None
        #: the agent's own middleware around :meth:`dispatch`, once it is served
        self.extension_stack: Any = None
        #: the ``route`` label of a request: a route's path template, or ``other``
        self.route_labels = RouteLabels(self.router)
        #: (variable, value) pairs of the server's own context; None until the lifespan runs
        self._clean_context: tuple[tuple[contextvars.ContextVar[Any], Any], ...] | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # Every request starts from a clean context. uvicorn creates a request's task from
        # the context its connection's read callback runs in, and asyncio re-registers that
        # callback from whichever task resumes reading (e.g. an earlier request's disconnect
        # watch, inside its trace span and request context): without this, a request on a
        # keep-alive connection could inherit the previous request's span and identity. A
        # context still the server's own runs in place (a task costs ~15% of our code).
        if self._inherits_clean_context():
            await self._dispatch(scope, receive, send)
            return
        task = asyncio.get_running_loop().create_task(
            self._dispatch(scope, receive, send), context=contextvars.Context()
        )
        await task

    def remember_clean_context(self) -> None:
        """Record the context variables every connection's task inherits (called as the
        lifespan starts, before anything sets a variable)."""
        self._clean_context = tuple(contextvars.copy_context().items())

    def _inherits_clean_context(self) -> bool:
        clean = self._clean_context
        if clean is None:  # no lifespan ran (e.g. a bare ASGI call): always a fresh task
            return False
        current = contextvars.copy_context()
        if len(current) != len(clean):
            return False
        return all(current.get(var, _UNSET) is value for var, value in clean)

    async def _dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        observer = self.observer
        stack = self.extension_stack  # the agent's own middleware, around everything
        if observer is None:
            await (self.dispatch if stack is None else stack)(scope, receive, send)
            return
        labels = self.route_labels
        rec = RequestRecord(labels.of(scope), scope["method"], scope["path"],
                            scope["headers"])
        if labels.unmetered and rec.route in labels.unmetered:
            rec.metered = False
        scope[RECORD_KEY] = rec
        observer.started(rec)
        try:
            if stack is None:
                await self.dispatch(scope, receive, send)
            else:
                # the agent's middleware may answer itself or rewrite our response: what
                # went on the wire is what counts
                wire = WireCounter(send, rec)
                try:
                    await stack(scope, receive, wire)
                finally:
                    wire.settle(rec)
        finally:
            observer.finished(rec)

    async def dispatch(self, scope: Any, receive: Any, send: Any) -> None:
        handler = None
        if scope["method"] == "POST" and not self.user_middleware and not self.root_path:
            handler = self._FAST.get(scope["path"])
        rec = scope.get(RECORD_KEY)
        if handler is not None:
            await self._fast_call(handler, scope, receive, send, rec)
        elif rec is not None:
            await super().__call__(scope, receive, observing_send(send, rec))
        else:
            await super().__call__(scope, receive, send)

    async def _fast_call(self, handler: Any, scope: Any, receive: Any, send: Any,
                         rec: RequestRecord | None) -> None:
        scope["app"] = self
        task = asyncio.current_task()
        self.inflight.add(task)
        try:
            await self._agent_call(handler, scope, receive, send, rec)
        finally:
            self.inflight.discard(task)

    async def _agent_call(self, handler: Any, scope: Any, receive: Any, send: Any,
                          rec: RequestRecord | None = None) -> None:
        try:
            response = await handler(Request(scope, receive, send))
        except asyncio.CancelledError:
            # uvicorn cancels what still runs when its graceful shutdown ends
            if rec is not None:
                rec.status, rec.code = 503, "shutdown"
            await _answer_cut_short(scope, receive, send)
            return
        except Exception as exc:  # a bug of ours: still the error contract
            status, body = self.state.runtime.errors.body(exc, None)
            response = routes.JSONBody(body, status, code="internal_error")
        if rec is not None and type(response) is routes.JSONBody:
            rec.status = response.status
            rec.bytes_out = len(response.body)
            if response.code:
                rec.code = response.code
        await response(scope, receive, send)

    async def finish_cut_requests(self) -> None:
        """uvicorn cancels the requests still running when its graceful shutdown ends, runs
        the lifespan shutdown, and on a signal exits right after it: give the cancelled
        requests a moment to answer (an error event + [DONE], or a 503) before that."""
        pending = [t for t in self.inflight if t is not None and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=_CUT_GRACE)


async def _answer_cut_short(scope: Any, receive: Any, send: Any) -> None:
    request_id = request_id_from(Headers(scope=scope))
    err = shutdown_error()
    logger.warning("request %s: %s", request_id, err.message)
    status, body = error_body(err, request_id)
    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
        try:
            await routes.JSONBody(body, status, request_id)(scope, receive, send)
        except Exception:  # the connection is already gone
            pass


def _install_error_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        err = MlflowAppAgentError(_http_message(request, exc), code=code,
                                  status_code=exc.status_code)
        rec = record_of(request.scope)
        if rec is not None:
            rec.code = code
        request_id = request_id_from(request.headers)
        status, body = error_body(err, request_id)
        headers = dict(exc.headers or {})
        headers["X-Request-Id"] = request_id
        return Response(body, status_code=status, media_type="application/json",
                        headers=headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        rec = record_of(request.scope)
        if rec is not None:
            rec.code = "internal_error"
        status, body = app.state.runtime.errors.body(exc, request.headers.get("x-request-id"),
                                                     request_secrets(request.headers))
        return Response(body, status_code=status, media_type="application/json")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


_ROUTES = ("POST /invocations, POST /responses, POST /feedback, GET /health, /ready, "
           "/agent/info, /metrics, /openapi.json (and the chat page at / for browsers)")


def _http_message(request: Request, exc: StarletteHTTPException) -> str:
    """Name what was asked for and what exists, instead of Starlette's bare 'Not Found'."""
    asked = f"{request.method} {request.url.path}"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        return f"{asked} is not allowed" + (f"; use {allowed}" if allowed else "")
    if exc.status_code != 404:
        return str(exc.detail)
    for route in ("/responses", "/invocations"):
        if request.url.path.rstrip("/").endswith(route) and request.url.path != route:
            return (f"no route {asked}; did you mean POST {route}? (point the OpenAI "
                    f"client's base_url at the server root, without /v1)")
    return f"no route {asked}; this server answers {_ROUTES}"


def build_app(location: Any = None, app_factory: str | None = None) -> Any:
    """``create_app(location)``, then the user's ``module:function`` app factory if one is
    given (``serve --app-factory``): the model is loaded first, since the factory's module
    ships in the model's ``code_paths``, which loading puts on ``sys.path``."""
    if not app_factory:
        return create_app(location)
    if location is None:
        location = os.environ.get(ENV_MODEL)
    served = resolve(location) if isinstance(location, str) else location
    return apply_app_factory(create_app(served), app_factory)


def app_from_env() -> Any:
    """Factory for ``uvicorn --factory`` and multi-worker serving: all from the environment."""
    return build_app(None, os.environ.get(ENV_APP_FACTORY) or None)
