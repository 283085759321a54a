"""Per-request bookkeeping shared by metrics and the access log: the app puts a
:class:`~mlflow_app_agent.server.metrics.RequestRecord` in the ASGI scope, the handlers and
the stream fill it in, and :class:`Observer` turns it into metric updates and one log line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from mlflow_app_agent.server import logs
from mlflow_app_agent.server.auth import context_from, header_map
from mlflow_app_agent.server.metrics import RequestRecord, ServerMetrics
from mlflow_app_agent.server.redact import NO_APP_SECRETS, Redactor, request_secrets

#: ASGI scope key of the request's record
RECORD_KEY = "mlflow_app_agent.record"

_INFO = logging.INFO


def record_of(scope: Any) -> RequestRecord | None:
    rec: RequestRecord | None = scope.get(RECORD_KEY)
    return rec


class RouteLabels:
    """The ``route`` label of a request: the path template of the app's route that answers
    it (``/ui/assets/{name}``, an extension's ``/items/{item_id}``), else ``other``. Never
    the raw path, so a client cannot mint new series. Routes added later (an agent's
    extension routes, once it has loaded) are picked up."""

    def __init__(self, router: Any) -> None:
        self._router = router
        self._seen = -1
        self._exact: frozenset[str] = frozenset()
        self._templates: tuple[tuple[Any, str], ...] = ()
        #: labels of extension routes that opted out of /metrics (``metered=False``)
        self.unmetered: frozenset[str] = frozenset()

    def of(self, scope: Any) -> str:
        routes = self._router.routes
        if len(routes) != self._seen:
            self._index(routes)
        path = scope["path"]
        if path in self._exact:
            return str(path)
        from starlette.routing import Match

        for route, label in self._templates:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return label
        return "other"

    def _index(self, routes: list[Any]) -> None:
        from starlette.routing import Mount

        exact, templates, unmetered = set(), [], set()
        for route in routes:
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                continue
            if getattr(route, "metered", True) is False:
                unmetered.add(path)
            if isinstance(route, Mount):
                templates.append((route, path.rstrip("/") + "/{path}"))
            elif getattr(route, "param_convertors", None):
                templates.append((route, path))
            else:
                exact.add(path)
        self._exact, self._templates, self._seen = frozenset(exact), tuple(templates), len(routes)
        self.unmetered = frozenset(unmetered)


class Observer:
    """Metrics (when on) and the access log (when its logger is enabled for INFO)."""

    def __init__(self, metrics: ServerMetrics | None, otlp_logs: bool = False,
                 redactor: Redactor = NO_APP_SECRETS) -> None:
        self.metrics = metrics
        self._otlp_logs = otlp_logs
        self._redactor = redactor
        self.total = 0
        self.errors = 0

    def started(self, rec: RequestRecord) -> None:
        if self.metrics is not None and rec.metered:
            self.metrics.started(rec.route)

    def finished(self, rec: RequestRecord) -> None:
        duration = time.perf_counter() - rec.start
        self.total += 1
        if rec.code:
            self.errors += 1
        if self.metrics is not None and rec.metered:
            self.metrics.finished(rec, duration)
        if logs.access_logger.isEnabledFor(_INFO):
            fields = access_fields(rec, duration, self._redactor)
            if self._otlp_logs and rec.trace_id:
                _log_in_trace(rec, fields)
            else:
                logs.access_line(fields)


def access_fields(rec: RequestRecord, duration: float,
                  redactor: Redactor = NO_APP_SECRETS) -> dict[str, Any]:
    """The access line's fields. What a client controls (the request id, the forwarded
    user, the path of an unknown route) goes through the redaction module, with the
    request's own credentials as secrets; the token itself is never a field."""
    headers = header_map(rec.headers)
    secrets = request_secrets(headers)
    request_id = rec.request_id or headers.get("x-request-id")
    user = rec.user or context_from(headers, "").user
    path = rec.route if rec.route != "other" else rec.path[:200]
    fields: dict[str, Any] = {
        "event": "access",
        "request_id": redactor.field(request_id[:128], secrets) if request_id else None,
        "method": rec.method,
        "path": path if rec.route != "other" else redactor.field(path, secrets),
        "route": rec.route,
        "mode": rec.mode or None,
        "status": rec.status,
        "error_code": rec.code or None,
        "duration_ms": round(duration * 1000, 2),
        "bytes_in": rec.bytes_in,
        "bytes_out": rec.bytes_out,
        "trace_id": rec.trace_id,
        "user": redactor.field(user[:200], secrets) if user else None,
    }
    if rec.mode == "stream":
        fields["events"] = rec.events
        fields["disconnected"] = rec.disconnected
        if rec.ttfe is not None:
            fields["ttfe_ms"] = round(rec.ttfe * 1000, 2)
    return fields


def _log_in_trace(rec: RequestRecord, fields: dict[str, Any]) -> None:
    """Log with the request's trace as the OTel current span, so the OTLP log record
    carries its trace and span ids (the span itself has ended by now)."""
    from opentelemetry import context, trace

    span_context = otel_span_context(rec.trace_id, rec.span_id)
    if span_context is None:
        logs.access_line(fields)
        return
    token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))
    try:
        logs.access_line(fields)
    finally:
        context.detach(token)


def otel_span_context(trace_id: str | None, span_id: str | None) -> Any:
    """An OTel SpanContext from MLflow's ids (``tr-<32 hex>`` and a hex span id)."""
    from opentelemetry.trace import SpanContext, TraceFlags

    if not trace_id:
        return None
    hex_id = trace_id.removeprefix("tr-")
    try:
        tid = int(hex_id, 16)
        sid = int(span_id, 16) if span_id else 1
    except ValueError:
        return None
    if not tid or tid >> 128:
        return None
    return SpanContext(trace_id=tid, span_id=sid or 1, is_remote=False,
                       trace_flags=TraceFlags(TraceFlags.SAMPLED))


def observing_send(send: Any, rec: RequestRecord) -> Any:
    """``send`` that notes the status, the body bytes and, for an error response whose
    handler did not say, the ``error.code`` of its JSON body (routes off the fast path)."""
    watch_error = False

    async def observed(message: Any) -> None:
        nonlocal watch_error
        kind = message["type"]
        if kind == "http.response.start":
            rec.status = message["status"]
            watch_error = rec.status >= 400 and not rec.code
        elif kind == "http.response.body":
            body = message.get("body", b"")
            rec.bytes_out += len(body)
            if watch_error:
                watch_error = False
                rec.code = error_code_of(body)
        await send(message)

    return observed


class WireCounter:
    """``send`` around the agent's own middleware: the status and bytes that reached the
    client, whoever answered (the middleware itself, or our routes under it)."""

    __slots__ = ("_send", "_rec", "status", "bytes", "_watch_error")

    def __init__(self, send: Any, rec: RequestRecord) -> None:
        self._send = send
        self._rec = rec
        self.status = 0
        self.bytes = 0
        self._watch_error = False

    async def __call__(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self._watch_error = self.status >= 400 and not self._rec.code
        elif kind == "http.response.body":
            body = message.get("body", b"")
            self.bytes += len(body)
            if self._watch_error:
                self._watch_error = False
                if not self._rec.code:
                    self._rec.code = error_code_of(body)
        await self._send(message)

    def settle(self, rec: RequestRecord) -> None:
        if self.status:
            rec.status, rec.bytes_out = self.status, self.bytes


_CODE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def error_code_of(body: bytes) -> str:
    """The ``error.code`` of an error body in the server's envelope, else ``http_error``;
    only code-shaped values (a handler's body is not a label source)."""
    code = None
    if body[:1] == b"{" and len(body) <= 65536:
        try:
            err = json.loads(body).get("error")
            code = err.get("code") if isinstance(err, dict) else None
        except (ValueError, AttributeError):
            code = None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "http_error"


class Telemetry:
    """What one app observes with: metrics (or None), OTLP export (or None) and the
    observer that feeds metrics and the access log."""

    def __init__(self, metrics: ServerMetrics | None, otlp: Any, observer: Observer,
                 trace_stats: Callable[[], dict[str, Any]]) -> None:
        self.metrics = metrics
        self.otlp = otlp
        self.observer = observer
        self._trace_stats = trace_stats

    def start(self) -> None:
        if self.otlp is not None:
            self.otlp.attach()

    def stats(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics is not None,
            "otlp": self.otlp.health.stats() if self.otlp is not None else None,
        }

    async def shutdown(self, observer: Observer | None) -> None:
        """The shutdown line, then a bounded flush of OTLP metrics and logs (a dead
        collector must not hold the process past the Apps 15 s window)."""
        import anyio
        import anyio.to_thread

        obs = observer or self.observer
        logs.lifecycle("shutdown", f"shutting down after {obs.total} requests",
                       requests=obs.total, errors=obs.errors,
                       traces=_trace_summary(self._trace_stats()))

        def stop() -> None:
            # the SDK raises when a reader could not finish in time (a collector that is
            # down): that is the bounded shutdown working, not an error to report
            try:
                if self.metrics is not None:
                    self.metrics.shutdown(timeout_millis=SHUTDOWN_SECONDS * 1000)
            except Exception:
                logging.getLogger(logs.SERVER_LOGGER).debug("metrics shutdown", exc_info=True)
            try:
                if self.otlp is not None:
                    self.otlp.shutdown()
            except Exception:
                logging.getLogger(logs.SERVER_LOGGER).debug("OTLP shutdown", exc_info=True)

        with anyio.move_on_after(SHUTDOWN_SECONDS):
            await anyio.to_thread.run_sync(stop, abandon_on_cancel=True)


#: seconds the shutdown gives OTLP to send what is left
SHUTDOWN_SECONDS = 1.0


def _trace_summary(stats: dict[str, Any]) -> dict[str, int]:
    from mlflow_app_agent.server.metrics import trace_counts

    return trace_counts(stats)


def install_telemetry(runtime: Any) -> Telemetry:
    """Metrics (unless ``metrics=false``), OTLP export when ``OTEL_EXPORTER_OTLP_ENDPOINT``
    is set, and MLflow's trace destination per ``trace_destination``."""
    from mlflow_app_agent.server import telemetry as otlp_mod

    settings = runtime.settings
    config = otlp_mod.otlp_config()
    otlp = None
    if config is not None:
        otlp_mod.route_traces(settings.trace_destination)
        try:
            otlp = otlp_mod.OtlpTelemetry(*config)
        except ImportError as exc:
            logging.getLogger(logs.SERVER_LOGGER).warning(
                "%s is set but the OTLP exporters are not installed (%s): install "
                "mlflow-app-agent[otlp]; serving without OTLP export",
                otlp_mod.ENV_ENDPOINT, exc.name)
    metrics = None
    if settings.metrics:
        readers = [otlp.metric_reader] if otlp is not None else []
        metrics = ServerMetrics(
            trace_stats=runtime.tracer.counts.snapshot,
            build_info=lambda: build_info(runtime),
            load_seconds=lambda: runtime.load_seconds,
            readers=readers,
            resource=otlp.resource if otlp is not None else otlp_mod.resource,
        )
        runtime.warm_ups.append(metrics.build)
    observer = Observer(metrics, otlp_logs=otlp is not None and otlp.logger_provider is not None,
                        redactor=runtime.errors.redactor)
    return Telemetry(metrics, otlp, observer, runtime.tracer.counts.snapshot)


def build_info(runtime: Any) -> dict[str, str]:
    from mlflow_app_agent._version import __version__

    served = runtime.served
    info = {"version": __version__, "model_name": "", "model_version": "", "git_commit": ""}
    if served is not None:
        info["model_name"] = str(served.registered_name or served.agent.name or "")
        info["model_version"] = str(served.registered_version or "")
        info["git_commit"] = str((served.git or {}).get("commit") or "")
    return info
