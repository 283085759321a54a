"""Tracing against a real sqlite MLflow store: one trace per request, tags, no token,
linked to the logged model, rate cap, and never failing a request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from mlflow_app_agent.model.load import LoadedAgent
from mlflow_app_agent.server import create_app

from . import agents

MSG = {"input": [{"role": "user", "content": "trace me"}]}
TOKEN = "dapi-super-secret-token-123"


def _traces(tracking_uri: str) -> list[Any]:
    import mlflow

    mlflow.flush_trace_async_logging()
    client = mlflow.MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("Default")
    return list(client.search_traces(locations=[experiment.experiment_id], max_results=200))


def _traced_app(source: Any, **settings: Any) -> TestClient:
    settings.setdefault("trace_max_per_second", 0)
    # these tests read the store right after shutdown: let the flush finish on a busy machine
    settings.setdefault("trace_flush_timeout", 60)
    return TestClient(create_app(source, tracing=True, **settings),
                      raise_server_exceptions=False)


def test_one_trace_per_request_with_tags_and_model_link(tracking_uri: str) -> None:
    import mlflow

    model = mlflow.create_external_model(name="served-echo")
    served = LoadedAgent(agent=agents.echo, model_id=model.model_id)
    headers = {"X-Forwarded-Email": "ada@example.com", "X-Forwarded-Access-Token": TOKEN}
    before = {t.info.trace_id for t in _traces(tracking_uri)}
    with _traced_app(served) as c:
        for i in range(2):
            resp = c.post("/invocations", json=MSG, headers={**headers, "X-Request-Id": f"t-{i}"})
            assert resp.status_code == 200
        resp = c.post("/invocations", json={**MSG, "stream": True},
                      headers={**headers, "X-Request-Id": "t-stream"})
        assert resp.status_code == 200
        stats = c.get("/agent/info").json()["tracing"]
        # resolved once at warm-up, not by MLflow's providers at every trace
        assert c.app.state.runtime.tracer.destination.experiment_id == "0"
    assert stats["traced"] == 3 and stats["failed"] == 0
    assert stats["export"] == "process" and stats["writer"]["alive"] is True
    new = [t for t in _traces(tracking_uri) if t.info.trace_id not in before]
    assert sorted(t.info.client_request_id for t in new) == ["t-0", "t-1", "t-stream"]
    for trace in new:
        meta = trace.info.trace_metadata
        assert meta["mlflow.trace.user"] == "ada@example.com"
        assert meta["mlflow.modelId"] == model.model_id
        assert trace.info.tags["mlflow_app_agent.request_id"] == trace.info.client_request_id
        assert TOKEN not in json.dumps(trace.to_dict())
    stream_trace = next(t for t in new if t.info.client_request_id == "t-stream")
    outputs = stream_trace.data.spans[0].outputs
    assert outputs["output"][0]["content"][0]["text"] == "trace me"


def test_failed_request_trace_records_error(tracking_uri: str) -> None:
    with _traced_app(agents.broken) as c:
        resp = c.post("/invocations", json=MSG, headers={"X-Request-Id": "t-broken"})
        assert resp.status_code == 500
    trace = next(t for t in _traces(tracking_uri) if t.info.client_request_id == "t-broken")
    assert str(trace.info.state).endswith("ERROR")


def test_rate_cap_skips_and_counts(tracking_uri: str) -> None:
    with _traced_app(agents.echo, trace_max_per_second=1) as c:
        for _ in range(6):
            assert c.post("/invocations", json=MSG).status_code == 200
        stats = c.get("/agent/info").json()["tracing"]
    assert 1 <= stats["traced"] <= 2
    assert stats["traced"] + stats["skipped"] == 6


def test_tracing_off_records_nothing(tracking_uri: str) -> None:
    with TestClient(create_app(agents.echo, tracing=False)) as c:
        resp = c.post("/invocations", json=MSG, headers={"X-Request-Id": "t-off"})
        assert resp.status_code == 200
    assert not [t for t in _traces(tracking_uri) if t.info.client_request_id == "t-off"]


def test_unreachable_tracking_server_never_fails_requests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import mlflow

    from .conftest import free_port

    # A tracking server that does not exist: every export fails, requests still succeed.
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(uri)
    try:
        with _traced_app(agents.echo) as c:
            for _ in range(3):
                assert c.post("/invocations", json=MSG).status_code == 200
            events = c.post("/invocations", json={**MSG, "stream": True})
            assert events.status_code == 200 and events.text.endswith("data: [DONE]\n\n")
    finally:
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'reset.db'}")


def test_experiment_from_env_is_used(tracking_uri: str, monkeypatch: pytest.MonkeyPatch,
                                     unique_name: str) -> None:
    import mlflow

    experiment_id = mlflow.MlflowClient().create_experiment(unique_name)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
    with _traced_app(agents.echo) as c:
        assert c.post("/invocations", json=MSG, headers={"X-Request-Id": "t-exp"}).status_code == 200
    mlflow.flush_trace_async_logging()
    traces = mlflow.MlflowClient().search_traces(locations=[experiment_id])
    assert [t.info.client_request_id for t in traces] == ["t-exp"]


def test_experiment_name_from_env_is_resolved_once(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    import mlflow

    experiment_id = mlflow.MlflowClient().create_experiment(unique_name)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", unique_name)
    with _traced_app(agents.echo) as c:
        resp = c.post("/invocations", json=MSG, headers={"X-Request-Id": "t-exp-name"})
        assert resp.status_code == 200
        assert c.app.state.runtime.tracer.destination.experiment_id == experiment_id
    mlflow.flush_trace_async_logging()
    traces = mlflow.MlflowClient().search_traces(locations=[experiment_id])
    assert [t.info.client_request_id for t in traces] == ["t-exp-name"]


def test_sample_ratio_zero_traces_nothing_and_counts_skips(tracking_uri: str) -> None:
    with _traced_app(agents.echo, trace_sample_ratio=0.0) as c:
        for _ in range(3):
            assert c.post("/invocations", json=MSG).status_code == 200
        stats = c.get("/agent/info").json()["tracing"]
    assert (stats["traced"], stats["skipped"], stats["failed"]) == (0, 3, 0)


def test_mlflow_failing_to_start_a_span_never_fails_the_request(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer provider is gone")

    with _traced_app(agents.echo) as c:
        assert c.get("/ready").status_code == 200
        monkeypatch.setattr(mlflow, "start_span", refuse)  # fault injection, after warm-up
        for stream in (False, True):
            resp = c.post("/invocations", json={**MSG, "stream": stream},
                          headers={"X-Request-Id": f"t-refused-{stream}"})
            assert resp.status_code == 200
        stats = c.get("/agent/info").json()["tracing"]
    # counted once each: traced, and lost to the failure (traced == written+dropped+failed)
    assert stats["failed"] == 2 and stats["traced"] == 2
    assert "Starting the trace of request t-refused-False failed" in caplog.text


def test_mlflow_failing_to_record_outputs_still_ends_the_trace(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.entities.span import LiveSpan

    def refuse(self: Any, outputs: Any) -> None:
        raise ValueError("outputs are not serializable")

    monkeypatch.setattr(LiveSpan, "set_outputs", refuse)  # fault injection
    with _traced_app(agents.echo) as c:
        resp = c.post("/invocations", json=MSG, headers={"X-Request-Id": "t-no-outputs"})
        assert resp.status_code == 200 and resp.json()["output"]
        stats = c.get("/agent/info").json()["tracing"]
    # the trace is still written (without outputs): not a lost trace
    assert stats["failed"] == 0 and stats["traced"] == 1
    trace = next(t for t in _traces(tracking_uri) if t.info.client_request_id == "t-no-outputs")
    assert trace.data.spans[0].inputs == MSG
