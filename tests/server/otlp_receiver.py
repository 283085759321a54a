"""A real OTLP receiver for tests: a gRPC server built from opentelemetry-proto's service
stubs, or an HTTP server for http/protobuf, recording every export request it gets."""

from __future__ import annotations

import http.server
import threading
import time
from concurrent import futures
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Recorded:
    def __init__(self) -> None:
        self.metrics: list[Any] = []  # ExportMetricsServiceRequest
        self.logs: list[Any] = []  # ExportLogsServiceRequest
        self.traces: list[Any] = []  # ExportTraceServiceRequest
        self.lock = threading.Lock()

    def add(self, kind: str, request: Any) -> None:
        with self.lock:
            getattr(self, kind).append(request)

    # --- views ----------------------------------------------------------------------------

    def resource_attrs(self, kind: str) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            requests = list(getattr(self, kind))
        for req in requests:
            rs_list = (req.resource_metrics if kind == "metrics" else
                       req.resource_logs if kind == "logs" else req.resource_spans)
            for rs in rs_list:
                out.append({a.key: _value(a.value) for a in rs.resource.attributes})
        return out

    def metric_names(self) -> set[str]:
        names = set()
        with self.lock:
            for req in self.metrics:
                for rm in req.resource_metrics:
                    for sm in rm.scope_metrics:
                        names.update(m.name for m in sm.metrics)
        return names

    def sum_value(self, name: str, **labels: str) -> float | None:
        """The last exported value of a cumulative sum/gauge data point matching labels."""
        found = None
        with self.lock:
            requests = list(self.metrics)
        for req in requests:
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        if m.name != name:
                            continue
                        points = (m.sum.data_points if m.HasField("sum") else
                                  m.gauge.data_points if m.HasField("gauge") else [])
                        for p in points:
                            attrs = {a.key: _value(a.value) for a in p.attributes}
                            if all(attrs.get(k) == v for k, v in labels.items()):
                                found = p.as_int if p.HasField("as_int") else p.as_double
        return found

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        with self.lock:
            requests = list(self.logs)
        for req in requests:
            for rl in req.resource_logs:
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        out.append({
                            "body": _value(r.body),
                            "trace_id": r.trace_id.hex(),
                            "span_id": r.span_id.hex(),
                            "severity": r.severity_text,
                            "attributes": {a.key: _value(a.value) for a in r.attributes},
                        })
        return out

    def span_trace_ids(self) -> set[str]:
        """Hex trace ids of the spans received."""
        with self.lock:
            requests = list(self.traces)
        return {sp.trace_id.hex() for req in requests for rs in req.resource_spans
                for ss in rs.scope_spans for sp in ss.spans}

    def wait_for(self, predicate: Any, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return bool(predicate())


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind)


class GrpcReceiver:
    def __init__(self) -> None:
        import grpc

        self.recorded = Recorded()
        rec = self.recorded

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                rec.add("metrics", request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                rec.add("logs", request)
                return logs_service_pb2.ExportLogsServiceResponse()

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                rec.add("traces", request)
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(grace=0)


class HttpReceiver:
    _TYPES = {
        "/v1/metrics": ("metrics", metrics_service_pb2.ExportMetricsServiceRequest,
                        metrics_service_pb2.ExportMetricsServiceResponse),
        "/v1/logs": ("logs", logs_service_pb2.ExportLogsServiceRequest,
                     logs_service_pb2.ExportLogsServiceResponse),
        "/v1/traces": ("traces", trace_service_pb2.ExportTraceServiceRequest,
                       trace_service_pb2.ExportTraceServiceResponse),
    }

    def __init__(self) -> None:
        self.recorded = Recorded()
        rec = self.recorded
        types = self._TYPES

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                kind = types.get(self.path)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if kind is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("content-encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                request = kind[1]()
                request.ParseFromString(body)
                rec.add(kind[0], request)
                out = kind[2]().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
