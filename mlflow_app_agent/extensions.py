"""Server extensions that travel with the agent: extra routes, ASGI middleware, start-up and
shutdown hooks, and request-context hooks.

They are declared in the agent's own code, so a models-from-code file (or ``code_paths``)
carries them into the registry, and the bundled server applies them wherever the agent is
served — ``create_app``, ``serve``, ``run-local`` and a materialized Databricks App::

    agent = Agent("support-bot")

    @agent.on_startup                  # sync or async; runs once the agent has loaded
    def open_pool(state):              # state: the app's ``app.state``
        state.pool = make_pool()

    @agent.on_shutdown(timeout=2)      # after in-flight requests; bounded per hook
    def close_pool(state):
        state.pool.close()

    @agent.route("/feedback-export", methods=["GET"])   # a FastAPI-style handler
    async def export(request):
        return {"rows": request.app.state.pool.count()}

    agent.add_middleware(SomeASGIMiddleware, option=1)

    @agent.request_context_hook        # extra fields for request_context().extra
    def tenant(ctx, headers):
        return {"tenant": headers.get("x-tenant")}

A ``ResponsesAgent`` subclass declares the same on a class attribute named
``server_extensions`` (an :class:`AgentExtensions`; use its decorators the same way).

The contract routes cannot be replaced or shadowed: a route on one of
:data:`CONTRACT_PATHS` (or under a reserved prefix) is refused when the agent is checked,
i.e. at log time. Extra routes get the agent routes' request id, ``require_auth`` rule,
error envelope, tracing decision and metrics unless they opt out (``auth=False``,
``traced=False``, ``metered=False``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from mlflow_app_agent.errors import AgentDefinitionError

#: paths the bundled server owns; extensions may not register them
CONTRACT_PATHS = (
    "/",
    "/chat",
    "/invocations",
    "/responses",
    "/feedback",
    "/health",
    "/ping",
    "/ready",
    "/agent/info",
    "/metrics",
    "/openapi.json",
)
#: path prefixes the bundled server owns (its own pages and assets)
CONTRACT_PREFIXES = ("/agent/", "/static/", "/ui/", "/_")
#: seconds a start-up hook may take before the server reports it as failed
DEFAULT_STARTUP_TIMEOUT = 60.0
#: seconds a shutdown hook may take; all shutdown hooks together stay within the Apps window
DEFAULT_SHUTDOWN_TIMEOUT = 2.0

_HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    path: str
    endpoint: Callable[..., Any]
    methods: tuple[str, ...]
    name: str
    auth: bool = True  # False: no forwarded identity needed even with require_auth
    traced: bool = True  # False: never an MLflow trace
    metered: bool = True  # False: not counted in /metrics (still in the access log)


@dataclasses.dataclass(frozen=True)
class MiddlewareSpec:
    cls: Any
    options: Mapping[str, Any]

    @property
    def name(self) -> str:
        return getattr(self.cls, "__qualname__", None) or type(self.cls).__name__


@dataclasses.dataclass(frozen=True)
class HookSpec:
    fn: Callable[..., Any]
    name: str
    timeout: float


def _callable_name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


class AgentExtensions:
    """The server behaviour an agent declares. Empty by default: an agent with none pays
    nothing at serving time."""

    def __init__(self) -> None:
        self.routes: list[RouteSpec] = []
        self.middleware: list[MiddlewareSpec] = []
        self.startup: list[HookSpec] = []
        self.shutdown: list[HookSpec] = []
        self.context_hooks: list[Callable[..., Any]] = []

    def __bool__(self) -> bool:
        return bool(self.routes or self.middleware or self.startup or self.shutdown
                    or self.context_hooks)

    # --- declaring ----------------------------------------------------------------------

    def route(
        self,
        path: str,
        *,
        methods: Sequence[str] = ("GET",),
        name: str | None = None,
        auth: bool = True,
        traced: bool = True,
        metered: bool = True,
    ) -> Callable[[F], F]:
        """Register ``fn`` as a FastAPI endpoint on ``path`` (path parameters, query
        parameters, a ``request: Request`` argument and dict return values work as in
        FastAPI)."""

        def decorator(fn: F) -> F:
            spec = RouteSpec(
                path=path,
                endpoint=fn,
                methods=tuple(m.upper() for m in methods),
                name=name or _callable_name(fn),
                auth=auth,
                traced=traced,
                metered=metered,
            )
            _check_route(spec)
            self.routes.append(spec)
            return fn

        return decorator

    def add_middleware(self, middleware_class: Any, **options: Any) -> None:
        """Wrap the whole app (contract routes included) in ``middleware_class(app,
        **options)``, Starlette style; the first added is the outermost."""
        if not callable(middleware_class):
            raise AgentDefinitionError(
                f"add_middleware needs an ASGI middleware class, got {middleware_class!r}"
            )
        self.middleware.append(MiddlewareSpec(middleware_class, dict(options)))

    def on_startup(self, fn: Any = None, /, *, timeout: float = DEFAULT_STARTUP_TIMEOUT) -> Any:
        """``fn(state)``, sync or async, run once after the agent has loaded and before
        ``/ready`` answers 200. If it raises or exceeds ``timeout`` seconds the process stays
        up and ``/ready`` answers 503 naming the hook and its error."""
        return self._hook(self.startup, "on_startup", fn, timeout)

    def on_shutdown(self, fn: Any = None, /, *,
                    timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> Any:
        """``fn(state)``, sync or async, run at shutdown after in-flight requests, within
        ``timeout`` seconds (a hook still running then is abandoned and logged)."""
        return self._hook(self.shutdown, "on_shutdown", fn, timeout)

    def request_context_hook(self, fn: F) -> F:
        """``fn(ctx, headers) -> Mapping | None``: extra fields for the request context,
        readable as ``request_context().extra`` (e.g. a tenant from a header). Runs for
        every agent and extension request, so keep it cheap."""
        if not callable(fn):
            raise AgentDefinitionError("@request_context_hook must decorate a function")
        self.context_hooks.append(fn)
        return fn

    def _hook(self, hooks: list[HookSpec], kind: str, fn: Any, timeout: float) -> Any:
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise AgentDefinitionError(f"@{kind}(timeout=...) must be a positive number of "
                                       f"seconds, got {timeout!r}")

        def decorator(func: Any) -> Any:
            if not callable(func):
                raise AgentDefinitionError(f"@{kind} must decorate a function")
            hooks.append(HookSpec(func, _callable_name(func), float(timeout)))
            return func

        return decorator(fn) if fn is not None else decorator

    # --- checking and describing --------------------------------------------------------

    def check(self) -> None:
        """Refuse what would break the server contract (raised at log time)."""
        seen: dict[tuple[str, str], str] = {}
        for spec in self.routes:
            _check_route(spec)
            for method in spec.methods:
                key = (spec.path, method)
                if key in seen:
                    raise AgentDefinitionError(
                        f"route {method} {spec.path} is declared twice ({seen[key]} and "
                        f"{spec.name})"
                    )
                seen[key] = spec.name

    def describe(self) -> dict[str, Any]:
        """What ``/agent/info`` shows: route paths, middleware class names, hook names."""
        return {
            "routes": [{"path": r.path, "methods": list(r.methods), "name": r.name,
                        "auth": r.auth, "traced": r.traced,
                        "metered": r.metered} for r in self.routes],
            "middleware": [m.name for m in self.middleware],
            "on_startup": [h.name for h in self.startup],
            "on_shutdown": [h.name for h in self.shutdown],
            "request_context_hooks": [_callable_name(h) for h in self.context_hooks],
        }


def is_contract_path(path: str) -> bool:
    """Whether ``path`` (a route path, possibly with ``{params}``) is the server's own."""
    normal = "/" + path.strip("/") if path.strip("/") else "/"
    if normal in CONTRACT_PATHS:
        return True
    return any(normal.startswith(p) or normal + "/" == p for p in CONTRACT_PREFIXES) or (
        normal.startswith("/{")  # a catch-all first segment would shadow every route
    )


def _check_route(spec: RouteSpec) -> None:
    if not isinstance(spec.path, str) or not spec.path.startswith("/"):
        raise AgentDefinitionError(f"route path must start with '/', got {spec.path!r}")
    if is_contract_path(spec.path):
        raise AgentDefinitionError(
            f"route {spec.path!r} would replace or shadow a route the server owns "
            f"({', '.join(CONTRACT_PATHS)}, and paths under {', '.join(CONTRACT_PREFIXES)}); "
            "choose another path"
        )
    bad = [m for m in spec.methods if m not in _HTTP_METHODS]
    if bad or not spec.methods:
        raise AgentDefinitionError(
            f"route {spec.path!r}: methods must be among {', '.join(sorted(_HTTP_METHODS))}, "
            f"got {list(spec.methods)}"
        )
    if not callable(spec.endpoint):
        raise AgentDefinitionError(f"route {spec.path!r}: the handler is not callable")
    if inspect.isgeneratorfunction(spec.endpoint):
        raise AgentDefinitionError(
            f"route {spec.path!r}: the handler is a generator; return a response (e.g. a "
            "StreamingResponse) instead"
        )


def extensions_of(obj: Any) -> AgentExtensions:
    """The extensions an Agent or a ResponsesAgent (class attribute ``server_extensions``)
    declares; an empty set when there are none."""
    found = getattr(obj, "server_extensions", None)
    if found is None:
        return AgentExtensions()
    if not isinstance(found, AgentExtensions):
        raise AgentDefinitionError(
            f"{type(obj).__name__}.server_extensions must be an "
            f"mlflow_app_agent.AgentExtensions, got {type(found).__name__}"
        )
    return found


class ExtensionsMixin:
    """The declaring methods of :class:`AgentExtensions`, on :class:`~mlflow_app_agent.Agent`
    itself (``@agent.route(...)``, ``@agent.on_startup``, ...)."""

    server_extensions: AgentExtensions

    def route(self, path: str, **options: Any) -> Callable[[F], F]:
        """See :meth:`AgentExtensions.route`."""
        return self.server_extensions.route(path, **options)

    def add_middleware(self, middleware_class: Any, **options: Any) -> None:
        """See :meth:`AgentExtensions.add_middleware`."""
        self.server_extensions.add_middleware(middleware_class, **options)

    def on_startup(self, fn: Any = None, /, **options: Any) -> Any:
        """See :meth:`AgentExtensions.on_startup`."""
        return self.server_extensions.on_startup(fn, **options)

    def on_shutdown(self, fn: Any = None, /, **options: Any) -> Any:
        """See :meth:`AgentExtensions.on_shutdown`."""
        return self.server_extensions.on_shutdown(fn, **options)

    def request_context_hook(self, fn: F) -> F:
        """See :meth:`AgentExtensions.request_context_hook`."""
        return self.server_extensions.request_context_hook(fn)


__all__ = [
    "CONTRACT_PATHS",
    "CONTRACT_PREFIXES",
    "AgentExtensions",
    "ExtensionsMixin",
    "HookSpec",
    "MiddlewareSpec",
    "RouteSpec",
    "extensions_of",
    "is_contract_path",
]
