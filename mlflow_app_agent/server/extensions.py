"""Applying an agent's server extensions (:mod:`mlflow_app_agent.extensions`) to the app:
extra routes behind the agent routes' request id, auth rule, error envelope and tracing;
user middleware around the whole app; start-up hooks before ``/ready``; shutdown hooks
after in-flight requests; and ``--app-factory`` for full control.

An agent with no extensions pays nothing: nothing here runs on its requests.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from mlflow_app_agent.context import RequestContext, reset_request_context, set_request_context
from mlflow_app_agent.errors import ExtensionError, MlflowAppAgentError, RequestError
from mlflow_app_agent.extensions import AgentExtensions, HookSpec, RouteSpec
from mlflow_app_agent.server.auth import context_from, request_id_from, require_identity
from mlflow_app_agent.server.errors import error_body, log_failure, to_app_error

logger = logging.getLogger("mlflow_app_agent.server")

#: seconds all shutdown hooks together may take; they run beside the trace flush (2 s), so
#: 10 s request grace + 2 s for cut requests + this stays inside Apps' 15 s before SIGKILL
SHUTDOWN_HOOKS_BUDGET = 2.0


def enrich_context(
    extensions: AgentExtensions, ctx: RequestContext, headers: Mapping[str, str]
) -> RequestContext:
    """Apply the agent's request-context hooks (their mappings merge into ``ctx.extra``)."""
    if not extensions.context_hooks:
        return ctx
    extra: dict[str, Any] = dict(ctx.extra)
    for hook in extensions.context_hooks:
        added = hook(ctx, headers)
        if added is None:
            continue
        if not isinstance(added, Mapping):
            raise ExtensionError(
                f"request-context hook {getattr(hook, '__name__', hook)!r} returned "
                f"{type(added).__name__}; return a mapping of extra fields or None",
                status_code=500,
            )
        extra.update(added)
    import dataclasses

    return dataclasses.replace(ctx, extra=extra)


# --- routes ---------------------------------------------------------------------------------


class _NoSpan:
    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def set_error(self, code: str, message: str) -> None:
        return None

    def set_outputs(self, outputs: Any) -> None:
        return None


class ExtensionRoute(APIRoute):
    """A FastAPI route whose handler runs inside the agent routes' conventions."""

    spec: RouteSpec
    agent_name: str

    @property
    def metered(self) -> bool:
        """Counted in /metrics (read by the metrics' route labels)."""
        return self.spec.metered

    def get_route_handler(self) -> Callable[[Request], Any]:
        inner = super().get_route_handler()
        spec, agent_name = self.spec, self.agent_name

        async def handler(request: Request) -> Response:
            runtime = request.app.state.runtime
            headers = request.headers
            request_id = request_id_from(headers)
            ctx = context_from(headers, request_id)
            secrets = (ctx.access_token,)
            try:
                ctx = enrich_context(runtime.extensions, ctx, headers)
                if spec.auth and runtime.settings.require_auth:
                    require_identity(ctx)
            except Exception as exc:
                return _error(exc, request_id, secrets)
            inputs = {"method": request.method, "path": request.url.path,
                      "query": dict(request.query_params)}
            span: Any = (runtime.tracer.request_span(agent_name, spec.path, inputs, ctx)
                         if spec.traced else _NoSpan())
            token = set_request_context(ctx)
            try:
                with span:
                    try:
                        response: Response = await inner(request)
                    except Exception as exc:
                        err = _as_error(exc)
                        if err.status_code >= 500:
                            log_failure(exc, request_id)
                        span.set_error(err.code, err.message)
                        return _error(err, request_id, secrets)
                    span.set_outputs({"status_code": response.status_code})
            finally:
                reset_request_context(token)
            response.headers.setdefault("x-request-id", request_id)
            return response

        return handler


def _as_error(exc: Exception) -> MlflowAppAgentError:
    if isinstance(exc, RequestValidationError):
        parts = [".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg"))
                 for e in exc.errors()]
        return RequestError("; ".join(parts) or "invalid request", status_code=422)
    if isinstance(exc, StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated",
                403: "permission_denied"}.get(exc.status_code, "http_error")
        return MlflowAppAgentError(str(exc.detail), code=code, status_code=exc.status_code)
    return to_app_error(exc)


def _error(exc: BaseException, request_id: str, secrets: tuple[str | None, ...]) -> Response:
    status, body = error_body(exc, request_id, secrets)
    return Response(body, status_code=status, media_type="application/json",
                    headers={"x-request-id": request_id})


def install_routes(app: Any, extensions: AgentExtensions, agent_name: str) -> None:
    for spec in extensions.routes:
        route_class = type("ExtensionRoute", (ExtensionRoute,),
                           {"spec": spec, "agent_name": agent_name})
        app.router.add_api_route(spec.path, spec.endpoint, methods=list(spec.methods),
                                 name=spec.name, route_class_override=route_class)


def build_middleware_stack(inner: Any, extensions: AgentExtensions) -> Any:
    """``inner`` wrapped in the agent's middleware; the first declared is the outermost."""
    stack = inner
    for spec in reversed(extensions.middleware):
        try:
            stack = spec.cls(stack, **spec.options)
        except Exception as exc:
            raise ExtensionError(
                f"middleware {spec.name} could not be created: {type(exc).__name__}: {exc}"
            ) from None
    return stack


# --- hooks ----------------------------------------------------------------------------------


async def _run_hook(hook: HookSpec, state: Any, timeout: float) -> None:
    with anyio.fail_after(timeout):
        if inspect.iscoroutinefunction(hook.fn):
            await hook.fn(state)
            return
        result = await anyio.to_thread.run_sync(hook.fn, state, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            await result


async def run_startup_hooks(extensions: AgentExtensions, state: Any) -> None:
    """Each start-up hook in order; the first failure is an :class:`ExtensionError` naming
    the hook (the caller keeps the process up and ``/ready`` at 503)."""
    for hook in extensions.startup:
        started = time.monotonic()
        try:
            await _run_hook(hook, state, hook.timeout)
        except TimeoutError:
            raise ExtensionError(
                f"start-up hook {hook.name!r} did not finish within its timeout of "
                f"{hook.timeout:g} s"
            ) from None
        except Exception as exc:
            raise ExtensionError(
                f"start-up hook {hook.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        logger.info("start-up hook %s ran in %.3f s", hook.name, time.monotonic() - started)


async def run_shutdown_hooks(extensions: AgentExtensions, state: Any) -> None:
    """Each shutdown hook in order within its own timeout and the shared budget; failures
    are logged, never raised (the others still run)."""
    end = time.monotonic() + SHUTDOWN_HOOKS_BUDGET
    for hook in extensions.shutdown:
        left = end - time.monotonic()
        if left <= 0:
            logger.warning("shutdown hook %s skipped: the %g s budget for shutdown hooks is "
                           "spent", hook.name, SHUTDOWN_HOOKS_BUDGET)
            continue
        try:
            await _run_hook(hook, state, min(hook.timeout, left))
        except TimeoutError:
            logger.warning("shutdown hook %s did not finish within %.1f s; abandoned",
                           hook.name, min(hook.timeout, left))
        except Exception as exc:
            logger.warning("shutdown hook %s failed: %s: %s", hook.name,
                           type(exc).__name__, exc)


# --- --app-factory ----------------------------------------------------------------------------


def load_app_factory(spec: str) -> Callable[[Any], Any]:
    """Import ``module:function`` (the module ships in the model's ``code_paths``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr or not all(
        part.isidentifier() for part in (*module_name.split("."), *attr.split("."))
    ):
        raise ExtensionError(f"--app-factory must be MODULE:FUNCTION, got {spec!r}",
                             status_code=400)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ExtensionError(
            f"--app-factory {spec}: cannot import {module_name!r} ({type(exc).__name__}: "
            f"{exc}); log it with the model's code_paths"
        ) from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ExtensionError(f"--app-factory {spec}: {module_name!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ExtensionError(f"--app-factory {spec}: {attr!r} is not callable")
    factory: Callable[[Any], Any] = target
    return factory


def apply_app_factory(app: Any, spec: str) -> Any:
    """Call the user's factory with the app ``create_app`` built; it must return an ASGI
    app (the same one, wrapped, or another)."""
    factory = load_app_factory(spec)
    try:
        result = factory(app)
    except Exception as exc:
        raise ExtensionError(
            f"--app-factory {spec} raised {type(exc).__name__}: {exc}"
        ) from exc
    if not _is_asgi_app(result):
        raise ExtensionError(
            f"--app-factory {spec} returned {type(result).__name__}, not an ASGI app (a "
            "callable taking scope, receive, send)"
        )
    return result


def _is_asgi_app(value: Any) -> bool:
    if value is None or isinstance(value, type) or not callable(value):
        return False
    try:
        params = [p for p in inspect.signature(value).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return True  # a builtin/C callable: trust it
    return len(params) == 3 or any(
        p.kind == p.VAR_POSITIONAL for p in inspect.signature(value).parameters.values()
    )
