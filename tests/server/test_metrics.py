"""/metrics and the access log against a real uvicorn process: counters equal what was sent,
no secret in any label or line, client-controlled values never become labels."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

TOKEN = "dapi-SECRET-token-4f1c9e"
AUTH = "Bearer AUTH-SECRET-77aa01"
BODY_SECRET = "BODY-SECRET-c0ffee"
HEADERS = {"X-Forwarded-Access-Token": TOKEN, "Authorization": AUTH,
           "Content-Type": "application/json",
           "X-Forwarded-Email": "ada@example.com", "X-Forwarded-User": "4242"}


def body(text: str, stream: bool = False) -> bytes:
    data: dict[str, Any] = {"input": [{"role": "user", "content": text}],
                            "custom_inputs": {"api_key": BODY_SECRET}}
    if stream:
        data["stream"] = True
    return json.dumps(data).encode()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for (n, lbls), v in samples.items():
        d = dict(lbls)
        if n == name and all(d.get(k) == val for k, val in labels.items()):
            total += v
    return total


def test_metrics_count_what_was_sent(serve: Any, agents_path: Path) -> None:
    server = serve(f"{agents_path}:slow", "--timeout", "2", "--log-level", "info",
                   "--log-format", "json")
    url = server.url
    sent_bytes = 0
    with httpx.Client(base_url=url, timeout=30, headers=HEADERS) as client:
        for _ in range(5):  # invoke, 200
            b = body("0.01")
            sent_bytes += len(b)
            assert client.post("/invocations", content=b).status_code == 200
        for _ in range(3):  # stream, 200, 2 events each
            b = body("0.01", stream=True)
            sent_bytes += len(b)
            r = client.post("/invocations", content=b)
            assert r.status_code == 200 and r.text.count("data: ") == 3  # 2 events + [DONE]
        b = body("3")  # invoke past the 2 s request timeout: 504
        sent_bytes += len(b)
        assert client.post("/invocations", content=b).status_code == 504
        for raw in (b"not json", b'{"input": 5}'):  # 400, 422
            sent_bytes += len(raw)
            assert client.post("/invocations", content=raw).status_code in (400, 422)
        for _ in range(3):
            assert client.get("/no/such/route").status_code == 404
    # a client that goes away after the first event of a stream
    b = body("1.5", stream=True)
    sent_bytes += len(b)
    with httpx.stream("POST", url + "/invocations", content=b, headers=HEADERS,
                      timeout=10) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: "):
                break

    def done(samples: dict[Any, float]) -> bool:
        return value(samples, "agent_client_disconnects_total") >= 1 and value(
            samples, "agent_requests_in_flight", route="/invocations") == 0

    deadline = time.monotonic() + 30
    samples = scrape(url)
    while not done(samples) and time.monotonic() < deadline:
        time.sleep(0.2)
        samples = scrape(url)

    req = "agent_requests_total"
    inv = {"route": "/invocations"}
    assert value(samples, req, **inv, mode="invoke", status_class="2xx", code="") == 5
    assert value(samples, req, **inv, mode="stream", status_class="2xx", code="") == 4
    assert value(samples, req, **inv, mode="invoke", status_class="5xx", code="timeout") == 1
    assert value(samples, req, **inv, status_class="4xx", code="invalid_request") == 2
    assert value(samples, req, route="other", status_class="4xx", code="not_found") == 3
    assert value(samples, req, **inv) == 5 + 4 + 1 + 2
    assert value(samples, "agent_errors_total", code="timeout", mode="invoke") == 1
    assert value(samples, "agent_timeouts_total", **inv, mode="invoke") == 1
    assert value(samples, "agent_client_disconnects_total", **inv, mode="stream") == 1
    assert value(samples, "agent_stream_events_total", **inv) == 3 * 2 + 1
    assert value(samples, "agent_request_bytes_total", **inv) == sent_bytes
    assert value(samples, "agent_response_bytes_total", **inv) > 0
    assert value(samples, "agent_request_duration_seconds_count", **inv) == 12
    assert value(samples, "agent_time_to_first_event_seconds_count", **inv) == 4
    assert value(samples, "agent_requests_in_flight", **inv) == 0
    assert value(samples, "agent_build_info") == 1
    assert value(samples, "agent_model_load_seconds") >= 0

    info = httpx.get(url + "/agent/info").json()
    assert info["telemetry"]["metrics"] is True

    # no secret (token, Authorization, body secret) in any label or log line
    text = httpx.get(url + "/metrics").text
    log = server.stop()
    for secret in (TOKEN, AUTH, AUTH.split()[1], BODY_SECRET):
        assert secret not in text
        assert secret not in log
    access = [json.loads(line) for line in log.splitlines()
              if line.startswith("{") and '"event":"access"' in line]
    agent_lines = [a for a in access if a["route"] == "/invocations"]
    assert len(agent_lines) == 12
    assert {a["user"] for a in agent_lines} == {"ada@example.com"}
    assert sum(a["bytes_in"] for a in agent_lines) == sent_bytes
    timeouts = [a for a in agent_lines if a["error_code"] == "timeout"]
    assert len(timeouts) == 1 and timeouts[0]["status"] == 504
    assert sum(1 for a in agent_lines if a.get("disconnected")) == 1
    lifecycle = [json.loads(line)["event"] for line in log.splitlines()
                 if line.startswith("{") and '"logger":"mlflow_app_agent.server.lifecycle"'
                 in line]
    assert lifecycle[0] == "start" and "model_loaded" in lifecycle and "ready" in lifecycle
    assert lifecycle[-1] == "shutdown"


def test_unknown_paths_add_no_series(serve: Any, agents_path: Path) -> None:
    server = serve(f"{agents_path}:echo")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get(f"/{uuid.uuid4().hex}")
        client.post("/invocations", json={"input": [{"role": "user", "content": "x"}],
                                          "model": "m-" + uuid.uuid4().hex})
        scrape(server.url)  # the /metrics route's own series exist from here on
        before = set(scrape(server.url))
        for i in range(1000):
            method = "GET" if i % 2 else "POST"
            client.request(method, f"/{uuid.uuid4().hex}/{i}",
                           headers={"X-Request-Id": uuid.uuid4().hex})
        for _ in range(20):
            client.post("/invocations", json={"input": [{"role": "user", "content": "x"}],
                                              "model": "m-" + uuid.uuid4().hex})
        after = scrape(server.url)
    assert set(after) == before
    assert value(after, "agent_requests_total", route="other") == 1001


def test_metrics_off(serve: Any, agents_path: Path) -> None:
    server = serve(f"{agents_path}:echo", "--no-metrics")
    assert httpx.get(server.url + "/metrics").status_code == 404
    info = httpx.get(server.url + "/agent/info").json()
    assert info["telemetry"]["metrics"] is False


def test_metrics_and_agent_info_agree_on_traces(serve: Any, agents_path: Path) -> None:
    server = serve(f"{agents_path}:echo", env={"MLFLOW_APP_AGENT_TRACING": "true",
                                               "MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND": "2"})
    statuses: list[int] = []
    # generous: the first traced requests wait for MLflow's warm-up (tens of seconds on a
    # loaded 2-core host)
    with httpx.Client(base_url=server.url, timeout=180) as client:
        threads = [threading.Thread(target=lambda: statuses.append(client.post(
            "/invocations", json={"input": [{"role": "user", "content": "t"}]}).status_code))
            for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 10
        tracing = client.get("/agent/info").json()["tracing"]
        samples = scrape(server.url)
    assert tracing["traced"] + tracing["skipped"] == 10
    for outcome in ("traced", "skipped", "failed"):
        assert value(samples, "agent_traces_total", outcome=outcome) == tracing[outcome]
