"""Request metrics: one set of OpenTelemetry instruments, exported as Prometheus text on
``GET /metrics`` and, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, over OTLP
(:mod:`mlflow_app_agent.server.telemetry`).

The hot path stays cheap: a request adds to plain counters keyed by a few low-cardinality
labels (route, mode, status class, error code), read by OTel *observable* instruments only
when a reader collects (a scrape, an OTLP export). Durations go into :class:`FastHistogram`
(a bisect and three adds): the SDK's synchronous histogram costs ~30x that per measurement
(attribute validation and hashing on every call), too much for a path of ~50 us; its
cumulative points are handed to the readers as OTel ``Metric`` data next to the SDK's own,
so both exports (the OTel Prometheus exporter and OTLP) render them like any histogram. Labels never come from the client: a path that is not
a route of the app is ``other``, error codes past :data:`MAX_CODES` are ``other``, and the
caller's identity is never a label. Trace counts are read from the Tracer's stats, the
numbers ``/agent/info`` shows.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

#: Prometheus/OTel metric names (without the ``_total`` that counters get on export)
PREFIX = "agent_"
#: the instrumentation scope of the server's metrics
SCOPE = "mlflow_app_agent.server"
#: distinct error codes kept as label values; more become ``other``
MAX_CODES = 50
#: request duration buckets, seconds (agents are slow: up to minutes)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0, 300.0)
TRACE_OUTCOMES = ("traced", "written", "skipped", "dropped", "failed")

_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class RequestRecord:
    """What one request did, filled in along the way (route handler, stream, app)."""

    __slots__ = ("route", "method", "path", "headers", "mode", "status", "code", "bytes_in",
                 "bytes_out", "events", "ttfe", "trace_id", "span_id", "user", "request_id",
                 "disconnected", "start", "metered")

    def __init__(self, route: str, method: str, path: str,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.route = route
        #: False for an extension route that opted out of /metrics
        self.metered = True
        self.method = method
        self.path = path
        #: the raw ASGI headers, read only when the access line is written
        self.headers = headers or []
        self.mode = ""
        self.status = 0
        self.code = ""
        self.bytes_in = 0
        self.bytes_out = 0
        self.events = 0
        self.ttfe: float | None = None
        self.trace_id: str | None = None
        self.span_id: str | None = None
        self.user: str | None = None
        self.request_id: str | None = None
        self.disconnected = False
        self.start = time.perf_counter()


class ServerMetrics:
    """The instruments of one app, on their own MeterProvider (no global OTel state)."""

    def __init__(
        self,
        *,
        trace_stats: Callable[[], dict[str, Any]],
        build_info: Callable[[], dict[str, str]],
        load_seconds: Callable[[], float | None],
        readers: Iterable[Any] = (),
        resource: Any = None,
        prometheus: bool = True,
    ) -> None:
        self._trace_stats = trace_stats
        self._build_info = build_info
        self._load_seconds = load_seconds
        # (route, mode, status class, code) -> n; route -> n / bytes; plain ints, event loop only
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.inflight: dict[str, int] = {}
        self.bytes_in: dict[str, int] = {}
        self.bytes_out: dict[str, int] = {}
        self.events: dict[str, int] = {}
        self.disconnects: dict[tuple[str, str], int] = {}
        self.timeouts: dict[tuple[str, str], int] = {}
        self._codes: set[str] = set()
        self._attrs: dict[tuple[str, ...], dict[str, str]] = {}

        self.duration = FastHistogram(
            PREFIX + "request_duration", ("route", "mode", "status_class"),
            "Seconds from request start to the last byte, by route, mode, status class")
        self.ttfe = FastHistogram(
            PREFIX + "time_to_first_event", ("route",),
            "Seconds from request start to the agent's first stream event")
        self.histograms = (self.duration, self.ttfe)
        self.registry: Any = None
        self.provider: Any = None
        self._readers = list(readers)
        self._resource = resource
        self._prometheus = prometheus
        self._build_lock = threading.Lock()
        if self._readers:  # an OTLP reader exports on its own schedule, from the start
            self.build()

    def build(self) -> None:
        """Create the MeterProvider, its readers and the instruments over the plain counters.
        Importing the OTel SDK and the Prometheus exporter costs ~100 ms, so without OTLP
        this runs after ``/ready`` (the server's warm-up) or at the first scrape."""
        with self._build_lock:
            if self.provider is None:
                self._build()

    def _build(self) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation
        from opentelemetry.sdk.metrics import MeterProvider

        all_readers = list(self._readers)
        if self._prometheus:
            self.registry, prom_reader = _prometheus_reader(self.histograms)
            all_readers.append(prom_reader)
        kwargs: dict[str, Any] = {"metric_readers": all_readers, "shutdown_on_exit": False}
        resource = self._resource() if callable(self._resource) else self._resource
        if resource is not None:
            kwargs["resource"] = resource
        self.provider = MeterProvider(**kwargs)
        meter = self.provider.get_meter(SCOPE)

        def counter(name: str, data: dict[Any, int], labels: tuple[str, ...], unit: str,
                    description: str) -> None:
            def observe(_: CallbackOptions) -> Iterable[Observation]:
                snapshot = data.copy()  # one C-level copy: safe against the loop's writes
                return [Observation(v, self._labels(labels, k)) for k, v in snapshot.items()]

            meter.create_observable_counter(PREFIX + name, [observe], unit=unit,
                                            description=description)

        counter("requests", self.requests, ("route", "mode", "status_class", "code"), "",
                "Requests answered, by route, mode (invoke/stream), status class, error code")
        counter("request_bytes", self.bytes_in, ("route",), "By",
                "Request body bytes received")
        counter("response_bytes", self.bytes_out, ("route",), "By",
                "Response body bytes sent (stream frames included)")
        counter("stream_events", self.events, ("route",), "",
                "Agent events sent on streams")
        counter("client_disconnects", self.disconnects, ("route", "mode"), "",
                "Streams the client closed before the end")
        counter("timeouts", self.timeouts, ("route", "mode"), "",
                "Requests cut by the server's request timeout")

        def errors(_: CallbackOptions) -> Iterable[Observation]:
            totals: dict[tuple[str, str], int] = {}
            for (_route, mode, _cls, code), n in self.requests.copy().items():
                if code:
                    totals[(mode, code)] = totals.get((mode, code), 0) + n
            return [Observation(n, self._labels(("mode", "code"), k)) for k, n in totals.items()]

        meter.create_observable_counter(PREFIX + "errors", [errors],
                                        description="Failed requests by mode and error code")

        def inflight(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(v, self._labels(("route",), (k,)))
                    for k, v in self.inflight.copy().items()]

        meter.create_observable_up_down_counter(PREFIX + "requests_in_flight", [inflight],
                                                description="Requests being answered now")

        def traces(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(n, self._labels(("outcome",), (k,)))
                    for k, n in trace_counts(self._trace_stats()).items()]

        meter.create_observable_counter(
            PREFIX + "traces", [traces],
            description="MLflow traces by outcome (the counts /agent/info shows)")

        def load(_: CallbackOptions) -> Iterable[Observation]:
            seconds = self._load_seconds()
            return [] if seconds is None else [Observation(seconds)]

        meter.create_observable_gauge(PREFIX + "model_load_seconds", [load], unit="s",
                                      description="Seconds the agent took to load")

        def build(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(1, self._build_info())]

        meter.create_observable_gauge(PREFIX + "build_info", [build],
                                      description="1, labelled with toolkit version, "
                                                  "registered model name/version, git commit")

    def _labels(self, names: tuple[str, ...], values: Any) -> dict[str, str]:
        key = (*names, *values) if isinstance(values, tuple) else (*names, values)
        attrs = self._attrs.get(key)
        if attrs is None:
            vals = values if isinstance(values, tuple) else (values,)
            attrs = self._attrs[key] = dict(zip(names, vals, strict=True))
        return attrs

    # --- hot path (event loop) ---------------------------------------------------------------

    def started(self, route: str) -> None:
        self.inflight[route] = self.inflight.get(route, 0) + 1

    def finished(self, rec: RequestRecord, duration: float) -> None:
        route, mode = rec.route, rec.mode
        self.inflight[route] -= 1
        code = rec.code
        if code and code not in self._codes:
            if len(self._codes) >= MAX_CODES:
                code = "other"
            else:
                self._codes.add(code)
        status_class = _CLASSES.get(rec.status // 100, "other")
        key = (route, mode, status_class, code)
        self.requests[key] = self.requests.get(key, 0) + 1
        if rec.bytes_in:
            self.bytes_in[route] = self.bytes_in.get(route, 0) + rec.bytes_in
        self.bytes_out[route] = self.bytes_out.get(route, 0) + rec.bytes_out
        if mode == "stream":
            self.events[route] = self.events.get(route, 0) + rec.events
            if rec.disconnected:
                k = (route, mode)
                self.disconnects[k] = self.disconnects.get(k, 0) + 1
            if rec.ttfe is not None:
                self.ttfe.record(rec.ttfe, (route,))
        if code == "timeout":
            k = (route, mode)
            self.timeouts[k] = self.timeouts.get(k, 0) + 1
        self.duration.record(duration, (route, mode, status_class))

    # --- export ------------------------------------------------------------------------------

    def prometheus_text(self) -> bytes:
        from prometheus_client import generate_latest

        self.build()
        return bytes(generate_latest(self.registry))

    def shutdown(self, timeout_millis: float = 1500) -> None:
        if self.provider is not None:
            self.provider.shutdown(timeout_millis=timeout_millis)


def trace_counts(snapshot: dict[str, Any]) -> dict[str, int]:
    """The trace outcomes in a :meth:`TraceCounts.snapshot
    <mlflow_app_agent.server.trace_counts.TraceCounts.snapshot>` (the one place that counts
    traces, also what ``/agent/info`` shows)."""
    out: dict[str, int] = {}
    for outcome in TRACE_OUTCOMES:
        value = snapshot.get(outcome)
        if isinstance(value, int) and not isinstance(value, bool):
            out[outcome] = value
    return out


class FastHistogram:
    """Explicit-bucket histogram per label tuple, in plain Python (event loop writes; a
    reader's thread copies). Exported as OTel ``Metric`` data by :func:`with_histograms`."""

    def __init__(self, name: str, labels: tuple[str, ...], description: str,
                 bounds: tuple[float, ...] = DURATION_BUCKETS, unit: str = "s") -> None:
        self.name = name
        self.labels = labels
        self.description = description
        self.bounds = bounds
        self.unit = unit
        self.start_ns = time.time_ns()
        #: label values -> [bucket counts..., count, sum, min, max]
        self.data: dict[tuple[str, ...], list[Any]] = {}

    def record(self, value: float, key: tuple[str, ...]) -> None:
        d = self.data.get(key)
        if d is None:
            n = len(self.bounds) + 1
            d = self.data[key] = [0] * n + [0, 0.0, value, value]
        n = len(self.bounds) + 1
        d[bisect.bisect_left(self.bounds, value)] += 1
        d[n] += 1
        d[n + 1] += value
        if value < d[n + 2]:
            d[n + 2] = value
        if value > d[n + 3]:
            d[n + 3] = value

    def to_metric(self) -> Any:
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            Histogram,
            HistogramDataPoint,
            Metric,
        )

        now = time.time_ns()
        n = len(self.bounds) + 1
        points = []
        for key, d in self.data.copy().items():
            d = list(d)
            points.append(HistogramDataPoint(
                attributes=dict(zip(self.labels, key, strict=True)),
                start_time_unix_nano=self.start_ns, time_unix_nano=now, count=d[n],
                sum=d[n + 1], bucket_counts=tuple(d[:n]), explicit_bounds=self.bounds,
                min=d[n + 2], max=d[n + 3]))
        if not points:
            return None
        return Metric(name=self.name, description=self.description, unit=self.unit,
                      data=Histogram(data_points=points,
                                     aggregation_temporality=AggregationTemporality.CUMULATIVE))


def with_histograms(metrics_data: Any, histograms: Iterable[FastHistogram]) -> Any:
    """``metrics_data`` (what the SDK collected) plus the hand-aggregated histograms, in the
    server's instrumentation scope."""
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    extra = [m for m in (h.to_metric() for h in histograms) if m is not None]
    if not extra or metrics_data is None or not metrics_data.resource_metrics:
        return metrics_data
    first, *rest = metrics_data.resource_metrics
    scopes = list(first.scope_metrics)
    for i, sm in enumerate(scopes):
        if sm.scope.name == SCOPE:
            scopes[i] = ScopeMetrics(scope=sm.scope, metrics=[*sm.metrics, *extra],
                                     schema_url=sm.schema_url)
            break
    else:
        scopes.append(ScopeMetrics(scope=InstrumentationScope(SCOPE), metrics=extra,
                                   schema_url=""))
    return MetricsData(resource_metrics=[
        ResourceMetrics(resource=first.resource, scope_metrics=scopes,
                        schema_url=first.schema_url), *rest])


def _prometheus_reader(histograms: tuple[FastHistogram, ...]) -> tuple[Any, Any]:
    """The OTel Prometheus exporter's reader, on a registry of this app's own (not
    prometheus_client's global one), fed the hand-aggregated histograms too."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    class Reader(PrometheusMetricReader):
        def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000,
                             **kwargs: Any) -> None:
            super()._receive_metrics(with_histograms(metrics_data, histograms),
                                     timeout_millis, **kwargs)

    registry = CollectorRegistry(auto_describe=False)
    reader = Reader(registry=registry, scope_info_enabled=False)
    return registry, reader
