"""OTLP export (Databricks Apps telemetry) against real receivers: a gRPC server from
opentelemetry-proto's stubs and an HTTP one for http/protobuf."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlflow_app_agent.server import telemetry

from .otlp_receiver import GrpcReceiver, HttpReceiver
from .test_metrics import AUTH, HEADERS, TOKEN

RESOURCE = "workspace.id=1234567890,app.name=otel-test-app"


def otel_env(endpoint: str, protocol: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_SERVICE_NAME": "otel-test-app",
        "OTEL_RESOURCE_ATTRIBUTES": RESOURCE,
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
    }


def test_otlp_config_reads_the_apps_variables() -> None:
    assert telemetry.otlp_config({}) is None
    assert telemetry.otlp_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4314"}) == (
        "http://localhost:4314", "grpc")
    assert telemetry.otlp_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                  "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == (
        "http://c:4318", "http/protobuf")
    from mlflow_app_agent.errors import ConfigError

    with pytest.raises(ConfigError, match="http/json"):
        telemetry.otlp_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "x",
                               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})


def test_route_traces_sets_mlflows_otlp_variables() -> None:
    env: dict[str, str] = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert telemetry.route_traces("experiment", env) is None
    assert env.pop(telemetry.ENV_MLFLOW_OTLP) == "false"
    assert telemetry.route_traces("both", env) == "http://c:4318/v1/traces"
    assert env[telemetry.ENV_DUAL_EXPORT] == "true"
    grpc_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4314"}
    assert telemetry.route_traces("otlp", grpc_env) == "http://localhost:4314"
    assert telemetry.ENV_DUAL_EXPORT not in grpc_env


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_metrics_and_logs_reach_the_collector(serve: Any, agents_path: Path, tmp_path: Path,
                                              protocol: str) -> None:
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    try:
        env = {**otel_env(receiver.endpoint, protocol), "MLFLOW_APP_AGENT_TRACING": "true",
               "MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND": "0"}
        server = serve(f"{agents_path}:echo", "--log-level", "info", env=env)
        with httpx.Client(base_url=server.url, timeout=60, headers=HEADERS) as client:
            # the tracing warm-up (MLflow import, a new sqlite store) can take a while here
            deadline = time.monotonic() + 120
            while (client.get("/agent/info").json()["tracing"]["export"] == "auto"
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            for i in range(3):
                r = client.post("/invocations",
                                json={"input": [{"role": "user", "content": f"hi {i}"}]})
                assert r.status_code == 200
        rec = receiver.recorded

        def arrived() -> bool:
            sent = rec.sum_value("agent_requests", route="/invocations", status_class="2xx")
            traced = [r for r in rec.log_records() if r["trace_id"].strip("0")]
            return sent == 3 and len(traced) >= 3

        assert rec.wait_for(arrived), (rec.metric_names(), rec.log_records()[:3])
        for kind in ("metrics", "logs"):
            attrs = rec.resource_attrs(kind)
            assert attrs and all(a.get("workspace.id") == "1234567890" and
                                 a.get("app.name") == "otel-test-app" and
                                 a.get("service.name") == "otel-test-app" for a in attrs)
        log_trace_ids = {r["trace_id"] for r in rec.log_records()
                         if r["attributes"].get("event") == "access"
                         and r["trace_id"].strip("0")}
        assert len(log_trace_ids) == 3
        for record in rec.log_records():
            text = json.dumps(record)
            assert TOKEN not in text and AUTH not in text
        log = server.stop()
    finally:
        receiver.stop()
    # the trace ids in the logs are traces MLflow wrote
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    deadline = time.monotonic() + 60
    stored: set[str] = set()
    while time.monotonic() < deadline and not log_trace_ids <= stored:
        experiments = [e.experiment_id for e in client.search_experiments()]
        traces = client.search_traces(locations=experiments, max_results=100)
        stored = {t.info.trace_id.removeprefix("tr-") for t in traces}
        time.sleep(0.5)
    assert log_trace_ids <= stored, (log_trace_ids, stored, log[-2000:])


def _stored_trace_ids(db: Path) -> set[str]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{db}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {t.info.trace_id.removeprefix("tr-")
            for t in client.search_traces(locations=experiments, max_results=100)}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(("destination", "protocol"),
                         [("otlp", "grpc"), ("both", "http/protobuf")])
def test_trace_destination_otlp_and_both(serve: Any, agents_path: Path, tmp_path: Path,
                                         destination: str, protocol: str) -> None:
    """MLflow's traces reach the collector (``otlp``: only there; ``both``: there and in
    the experiment), with the ids the responses carry and the Apps resource."""
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    try:
        env = {**otel_env(receiver.endpoint, protocol), "MLFLOW_APP_AGENT_TRACING": "true",
               "MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND": "0", "OTEL_BSP_SCHEDULE_DELAY": "200"}
        server = serve(f"{agents_path}:echo", "--trace-destination", destination, env=env)
        ids = set()
        # generous: the first traced request waits for MLflow's warm-up
        with httpx.Client(base_url=server.url, timeout=180, headers=HEADERS) as client:
            for i in range(3):
                r = client.post("/invocations",
                                json={"input": [{"role": "user", "content": f"hi {i}"}]})
                assert r.status_code == 200
                ids.add(r.headers["x-mlflow-trace-id"].removeprefix("tr-"))
        rec = receiver.recorded
        assert rec.wait_for(lambda: ids <= rec.span_trace_ids()), rec.span_trace_ids()
        attrs = rec.resource_attrs("traces")
        assert attrs and all(a.get("workspace.id") == "1234567890" and
                             a.get("service.name") == "otel-test-app" for a in attrs)
        log = server.stop()
    finally:
        receiver.stop()
    assert "Failed to end span" not in log  # the MLflow/OTel SDK mismatch is worked around
    db = tmp_path / "mlflow.db"
    if destination == "otlp":
        assert not ids & _stored_trace_ids(db)
        return
    # both: the experiment gets them too (the trace writer may finish after the server)
    deadline = time.monotonic() + 120
    while not ids <= (stored := _stored_trace_ids(db)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ids <= stored, (ids, stored, log[-2000:])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_collector_down_requests_unaffected(serve: Any, agents_path: Path,
                                            protocol: str) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    server = serve(f"{agents_path}:echo", "--log-level", "info", "--log-format", "text",
                   env=otel_env(endpoint, protocol))
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _i in range(20):
            r = client.post("/invocations", json={"input": [{"role": "user", "content": "x"}]})
            assert r.status_code == 200
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            otlp = client.get("/agent/info").json()["telemetry"]["otlp"]
            if otlp["exports_failed"] >= 2:
                break
            time.sleep(0.2)
        assert otlp["exports_failed"] >= 2 and otlp["exports_ok"] == 0
    # Bounded by design (OTLP flush <= 1 s, 5 s export timeout), not timed here (no
    # wall-clock asserts on a shared host): the lifespan must run to its end on SIGTERM
    # with the collector still down, rather than hang until the platform's SIGKILL.
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=120) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    log = server.log.read_text()
    assert "Application shutdown complete" in log, log[-3000:]
    warnings = [line for line in log.splitlines() if "OTLP export" in line and "failed" in line]
    assert len(warnings) == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
