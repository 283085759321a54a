"""OTLP export (Databricks Apps telemetry): metrics and the server's log lines go to the
collector named by ``OTEL_EXPORTER_OTLP_ENDPOINT``, over ``grpc`` or ``http/protobuf`` per
``OTEL_EXPORTER_OTLP_PROTOCOL``, with the resource from ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES`` (what Apps sets when app telemetry is on).

Telemetry never slows or fails a request: exports run in the SDK's background threads,
a failing endpoint is reported by *one* warning line (and a recovery line), failed exports
are counted (``/agent/info`` -> ``telemetry``), and shutdown is bounded.

The OTLP exporters live in the ``otlp`` extra (``pip install mlflow-app-agent[otlp]``);
:mod:`mlflow_app_agent.apps.build.requirements` pins them into an app when the toolkit was
installed with them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from mlflow_app_agent._version import __version__
from mlflow_app_agent.server.logs import SERVER_LOGGER

logger = logging.getLogger(SERVER_LOGGER + ".telemetry")

ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
ENV_DUAL_EXPORT = "MLFLOW_TRACE_ENABLE_OTLP_DUAL_EXPORT"
ENV_MLFLOW_OTLP = "MLFLOW_ENABLE_OTLP_EXPORTER"
PROTOCOLS = ("grpc", "http/protobuf")
#: seconds one OTLP export may take (the SDK's default is 10 s, with retries inside it)
EXPORT_TIMEOUT = 5.0
# The exporters log every failed attempt (each export interval, with retries): replaced by
# one warning line of ours.
_EXPORTER_LOGGERS = ("opentelemetry.exporter.otlp.proto.grpc.exporter",
                     "opentelemetry.exporter.otlp.proto.http.metric_exporter",
                     "opentelemetry.exporter.otlp.proto.http._log_exporter",
                     "opentelemetry.exporter.otlp.proto.http",
                     "opentelemetry.exporter.otlp.proto.grpc",
                     "opentelemetry.sdk._shared_internal",
                     "opentelemetry.sdk._logs._internal.export")


def otlp_config(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """``(endpoint, protocol)`` when OTLP export is configured, else None."""
    env = os.environ if env is None else env
    endpoint = (env.get(ENV_ENDPOINT) or "").strip()
    if not endpoint:
        return None
    protocol = (env.get(ENV_PROTOCOL) or "grpc").strip().lower()
    if protocol not in PROTOCOLS:
        from mlflow_app_agent.errors import ConfigError

        raise ConfigError(f"{ENV_PROTOCOL}={protocol!r} is not supported; use "
                          f"{' or '.join(PROTOCOLS)}")
    return endpoint, protocol


def resource() -> Any:
    """OTel resource: ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` (the SDK reads
    them), else the app's name as service.name."""
    from opentelemetry.sdk.resources import Resource

    attrs: dict[str, Any] = {"service.version": __version__}
    declared = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in declared:
        attrs["service.name"] = os.environ.get("DATABRICKS_APP_NAME") or "mlflow-app-agent"
    return Resource.create(attrs)


class ExportHealth:
    """Counts failed exports; logs the first failure of a run of failures, and recovery."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.failed = 0
        self.succeeded = 0
        self._down = False
        self._lock = threading.Lock()

    def record(self, signal: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self.succeeded += 1
                was_down, self._down = self._down, False
            else:
                self.failed += 1
                was_down, self._down = self._down, True
        if not ok and not was_down:
            logger.warning("OTLP export of %s to %s failed; telemetry is dropped (and "
                           "counted) until the endpoint answers; requests are unaffected",
                           signal, self.endpoint)
        elif ok and was_down:
            logger.info("OTLP export to %s works again", self.endpoint)

    def stats(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "exports_ok": self.succeeded,
                "exports_failed": self.failed}


def _quiet_exporter_loggers() -> None:
    for name in _EXPORTER_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


class OtlpTelemetry:
    """The OTLP side of one app: a metric reader (for :class:`ServerMetrics`) and a logs
    bridge on the server's logger."""

    def __init__(self, endpoint: str, protocol: str, *, logs: bool = True) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self.health = ExportHealth(endpoint)
        self.resource = resource()
        _quiet_exporter_loggers()
        self.metric_reader = self._metric_reader()
        self.logger_provider: Any = None
        self._handler: logging.Handler | None = None
        if logs:
            self._install_logs()

    def _metric_reader(self) -> Any:
        from opentelemetry.sdk.metrics.export import (
            MetricExportResult,
            PeriodicExportingMetricReader,
        )

        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            base: Any = GrpcMetricExporter
            kwargs: dict[str, Any] = {"insecure": _insecure(self.endpoint)}
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetricExporter,
            )

            base = HttpMetricExporter
            kwargs = {"endpoint": _http_url(self.endpoint, "metrics")}
        health = self.health

        class CountingMetricExporter(base):  # type: ignore[misc, valid-type]
            def export(self, metrics_data: Any, timeout_millis: float = 10_000,
                       **kw: Any) -> Any:
                try:
                    result = super().export(metrics_data, timeout_millis=timeout_millis, **kw)
                except Exception:
                    result = MetricExportResult.FAILURE
                health.record("metrics", result == MetricExportResult.SUCCESS)
                return result

        exporter = CountingMetricExporter(timeout=EXPORT_TIMEOUT, **kwargs)
        return PeriodicExportingMetricReader(exporter)

    def _install_logs(self) -> None:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs import export as log_export
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        # LogRecordExportResult in newer SDKs, LogExportResult before
        log_result: Any = getattr(log_export, "LogRecordExportResult", None) or log_export.LogExportResult

        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as GrpcLogExporter,
            )

            base: Any = GrpcLogExporter
            kwargs: dict[str, Any] = {"insecure": _insecure(self.endpoint)}
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import (
                OTLPLogExporter as HttpLogExporter,
            )

            base = HttpLogExporter
            kwargs = {"endpoint": _http_url(self.endpoint, "logs")}
        health = self.health

        class CountingLogExporter(base):  # type: ignore[misc, valid-type]
            def export(self, batch: Any, *args: Any, **kw: Any) -> Any:
                try:
                    result = super().export(batch, *args, **kw)
                except Exception:
                    result = log_result.FAILURE
                health.record("logs", result == log_result.SUCCESS)
                return result

        provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        provider.add_log_record_processor(
            BatchLogRecordProcessor(CountingLogExporter(timeout=EXPORT_TIMEOUT, **kwargs)))
        self.logger_provider = provider
        self._handler = OtlpLogHandler(provider)

    def attach(self) -> None:
        """Send the server's log lines to OTLP from now on (called at start-up, after the
        server has configured logging, which replaces the logger's handlers)."""
        server_logger = logging.getLogger(SERVER_LOGGER)
        if self._handler is not None and self._handler not in server_logger.handlers:
            server_logger.addHandler(self._handler)

    def shutdown(self) -> None:
        """Flush and stop the logs pipeline (the metric reader stops with its provider)."""
        if self._handler is not None:
            logging.getLogger(SERVER_LOGGER).removeHandler(self._handler)
            self._handler = None
        if self.logger_provider is not None:
            self.logger_provider.shutdown()


class OtlpLogHandler(logging.Handler):
    """Server log lines as OTel log records: the message as body, the line's fields as
    attributes (None dropped), the current OTel context (so a line logged inside a request's
    trace carries its trace and span ids). Uses the Logs API directly: the SDK's own
    ``LoggingHandler`` is deprecated and would pass the fields dict as one invalid value."""

    _SEVERITY = {logging.DEBUG: (5, "DEBUG"), logging.INFO: (9, "INFO"),
                 logging.WARNING: (13, "WARN"), logging.ERROR: (17, "ERROR"),
                 logging.CRITICAL: (21, "FATAL")}

    def __init__(self, provider: Any) -> None:
        super().__init__(logging.INFO)
        self._provider = provider

    def emit(self, record: logging.LogRecord) -> None:
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.context import get_current

        from mlflow_app_agent.server.logs import FIELDS

        try:
            number, text = self._SEVERITY.get(record.levelno, (9, record.levelname))
            attrs: dict[str, Any] = {"logger": record.name}
            fields = getattr(record, FIELDS, None)
            if isinstance(fields, dict):
                attrs.update({k: v for k, v in fields.items()
                              if isinstance(v, (str, bool, int, float))})
            if record.exc_info and record.exc_info[0] is not None:
                attrs["exception.type"] = record.exc_info[0].__name__
            self._provider.get_logger(record.name).emit(
                timestamp=int(record.created * 1e9), context=get_current(),
                severity_number=SeverityNumber(number), severity_text=text,
                body=record.getMessage(), attributes=attrs)
        except Exception:
            self.handleError(record)


def _insecure(endpoint: str) -> bool:
    return not endpoint.startswith("https://")


def _http_url(endpoint: str, signal: str) -> str:
    """http/protobuf: the generic endpoint gets ``/v1/<signal>`` appended (as the spec says;
    an explicit per-signal variable is read by the exporter itself)."""
    specific = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    if specific:
        return specific
    return endpoint.rstrip("/") + f"/v1/{signal}"


def route_traces(destination: str, env: dict[str, str] | Any = None) -> str | None:
    """Decide where MLflow sends traces once an OTLP endpoint is set. MLflow (3.x) on its
    own *replaces* the experiment with the collector as soon as ``OTEL_EXPORTER_OTLP_
    ENDPOINT`` is set, which on Databricks Apps (telemetry on) would take the traces out of
    the experiment the app was reviewed with. So: ``experiment`` turns MLflow's OTLP span
    export off (unless ``MLFLOW_ENABLE_OTLP_EXPORTER`` is set explicitly); ``otlp`` points
    it at the collector; ``both`` adds MLflow's dual export. MLflow reads these variables
    when it builds its tracer provider (the warm-up), so this runs before. Returns the
    traces endpoint in effect, or None."""
    env = os.environ if env is None else env
    config = otlp_config(env)
    if config is None:
        return None
    if destination == "experiment":
        env.setdefault(ENV_MLFLOW_OTLP, "false")
        return None
    endpoint, protocol = config
    if not env.get(ENV_TRACES_ENDPOINT):
        env[ENV_TRACES_ENDPOINT] = (endpoint if protocol == "grpc"
                                    else endpoint.rstrip("/") + "/v1/traces")
    env.setdefault(ENV_TRACES_PROTOCOL, protocol)
    if destination == "both":
        env[ENV_DUAL_EXPORT] = "true"
    tags_survive_span_end()
    return str(env[ENV_TRACES_ENDPOINT])


def tags_survive_span_end() -> None:
    """Work around an MLflow/OTel SDK mismatch that would lose every OTLP-exported trace.

    MLflow's ``OtelSpanProcessor.on_end`` (3.17) copies a trace's own tags (the server tags
    each trace with its request id and endpoint) into the ended root span's attributes,
    but the OTel SDK (>= 1.37) freezes a span's attributes *before* ``on_end``: the copy
    raises ("Cannot mutate immutable BoundedAttributes"), MLflow logs "Failed to end span",
    and the root span is never exported. Around that one method, this thaws the ended
    span's attributes so MLflow's copy lands as it intends, then freezes them again.
    Applied once, only when traces go to OTLP, and only if MLflow still does the copy."""
    try:
        from mlflow.tracing.processor.otel import OtelSpanProcessor
    except ImportError:  # pragma: no cover - an MLflow without it exports no OTLP traces
        return
    original = OtelSpanProcessor.on_end
    if getattr(original, "_thaws_attributes", False):
        return
    import inspect

    try:
        copies_tags = "span._attributes[" in inspect.getsource(original)
    except (OSError, TypeError):  # pragma: no cover - no source: assume the copy
        copies_tags = True
    if not copies_tags:
        return

    def on_end(self: Any, span: Any) -> None:
        attrs: Any = getattr(span, "_attributes", None)
        frozen = getattr(attrs, "_immutable", False) is True
        if frozen:
            attrs._immutable = False
        try:
            original(self, span)
        finally:
            if frozen:
                attrs._immutable = True

    on_end._thaws_attributes = True  # type: ignore[attr-defined]
    OtelSpanProcessor.on_end = on_end  # type: ignore[method-assign]
