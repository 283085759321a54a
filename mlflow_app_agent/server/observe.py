"""Per-request bookkeeping shared by metrics and the access log: the app puts a
:class:`~mlflow_app_agent.server.metrics.RequestRecord` in the ASGI scope, the handlers and
the stream fill it in, and :class:`Observer` turns it into metric updates and one log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from mlflow_app_agent.server import logs
from mlflow_app_agent.server.metrics import RequestRecord, ServerMetrics

#: ASGI scope key of the request's record
RECORD_KEY = "mlflow_app_agent.record"

_INFO = logging.INFO


def record_of(scope: Any) -> RequestRecord | None:
    rec: RequestRecord | None = scope.get(RECORD_KEY)
    return rec


class Observer:
    """Metrics (when on) and the access log (when its logger is enabled for INFO)."""

    def __init__(self, metrics: ServerMetrics | None, otlp_logs: bool = False) -> None:
        self.metrics = metrics
        self._otlp_logs = otlp_logs
        self.total = 0
        self.errors = 0

    def started(self, rec: RequestRecord) -> None:
        if self.metrics is not None:
            self.metrics.started(rec.route)

    def finished(self, rec: RequestRecord) -> None:
        duration = time.perf_counter() - rec.start
        self.total += 1
        if rec.code:
            self.errors += 1
        if self.metrics is not None:
            self.metrics.finished(rec, duration)
        if logs.access_logger.isEnabledFor(_INFO):
            fields = access_fields(rec, duration)
            if self._otlp_logs and rec.trace_id:
                _log_in_trace(rec, fields)
            else:
                logs.access_line(fields)


def access_fields(rec: RequestRecord, duration: float) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event": "access",
        "request_id": rec.request_id,
        "method": rec.method,
        "path": rec.route if rec.route != "other" else rec.path[:200],
        "route": rec.route,
        "mode": rec.mode or None,
        "status": rec.status,
        "error_code": rec.code or None,
        "duration_ms": round(duration * 1000, 2),
        "bytes_in": rec.bytes_in,
        "bytes_out": rec.bytes_out,
        "trace_id": rec.trace_id,
        "user": rec.user,
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
    """``send`` that notes the status and the body bytes (routes off the fast path)."""

    async def observed(message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            rec.status = message["status"]
        elif kind == "http.response.body":
            rec.bytes_out += len(message.get("body", b""))
        await send(message)

    return observed


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
            resource=otlp.resource if otlp is not None else otlp_mod.resource(),
        )
    observer = Observer(metrics, otlp_logs=otlp is not None and otlp.logger_provider is not None)
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
