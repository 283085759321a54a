"""Metrics and access lines cover every route, not only the agent's: the chat page, its
assets, ``/feedback``, an agent's extension routes and what its middleware answers itself,
labelled by route template (in-process, the real app)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from mlflow_app_agent import Agent
from mlflow_app_agent.server import create_app
from mlflow_app_agent.server.logs import ACCESS_LOGGER
from mlflow_app_agent.server.observe import error_code_of

TOKEN = "dapi0123456789abcdef0123456789abcdef"  # a Databricks token's shape
JSON = {"content-type": "application/json"}


class Gate:
    """Answers 403 itself (the server's error envelope) when ``x-block`` is set."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and any(k == b"x-block" for k, _ in scope["headers"]):
            body = b'{"error":{"code":"blocked","message":"no"}}'
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def _agent() -> Agent:
    agent = Agent("routes")
    agent.add_middleware(Gate)

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [{"type": "message", "id": "m", "role": "assistant",
                            "content": [{"type": "output_text", "text": "ok"}]}]}

    @agent.route("/items/{item_id}")
    def item(item_id: str) -> dict[str, Any]:
        return {"item": item_id}

    @agent.route("/probe", metered=False)
    def probe() -> dict[str, Any]:
        return {"ok": True}

    return agent


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _count(samples: dict[Any, float], **labels: str) -> float:
    return sum(v for (n, lbls), v in samples.items() if n == "agent_requests_total"
               and all(dict(lbls).get(k) == val for k, val in labels.items()))


@pytest.fixture
def client(caplog: pytest.LogCaptureFixture) -> Any:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with TestClient(create_app(_agent(), tracing=False)) as c:
        yield c


def test_every_route_is_counted_by_its_template(client: TestClient,
                                                caplog: pytest.LogCaptureFixture) -> None:
    item_ids = [uuid.uuid4().hex for _ in range(5)]
    for item_id in item_ids:
        assert client.get(f"/items/{item_id}").json() == {"item": item_id}
    html = {"accept": "text/html"}
    assert client.get("/", headers=html).status_code == 200
    page = client.get("/chat", headers=html)
    assert page.status_code == 200
    asset = page.text.split('src="', 1)[1].split('"', 1)[0]  # a content-hashed asset URL
    assert client.get(asset).status_code == 200
    # tracing is off: /feedback answers 404 with its code in the error body
    fb = client.post("/feedback", headers=JSON,
                     json={"request_id": "r1", "value": True})
    assert fb.status_code == 404
    assert client.post("/invocations", headers={**JSON, "x-block": "1"},
                       json={"input": [{"role": "user", "content": "x"}]}).status_code == 403
    assert client.post("/invocations", headers=JSON,
                       json={"input": [{"role": "user", "content": "x"}]}).status_code == 200

    samples = _samples(client)
    assert _count(samples, route="/items/{item_id}", status_class="2xx") == 5
    assert _count(samples, route="/", status_class="2xx") == 1
    assert _count(samples, route="/chat", status_class="2xx") == 1
    assert _count(samples, route="/ui/assets/{name}", status_class="2xx") == 1
    assert _count(samples, route="/feedback", status_class="4xx", code="not_found") == 1
    assert _count(samples, route="/invocations", status_class="4xx", code="blocked") == 1
    assert _count(samples, route="/invocations", mode="invoke", status_class="2xx") == 1
    assert _count(samples, route="other") == 0
    exposition = client.get("/metrics").text
    assert not any(item_id in exposition for item_id in item_ids)
    # the middleware's own answer: bytes as they went on the wire
    routes = {r.fields["route"] for r in caplog.records if hasattr(r, "fields")}
    assert {"/items/{item_id}", "/", "/chat", "/ui/assets/{name}", "/feedback",
            "/invocations"} <= routes


def test_access_lines_go_through_redaction(client: TestClient,
                                           caplog: pytest.LogCaptureFixture) -> None:
    headers = {"x-forwarded-access-token": TOKEN, "x-forwarded-email": "ada@example.com"}
    client.get("/items/1", headers={**headers, "x-request-id": TOKEN})  # token as the id
    client.get(f"/nowhere/{TOKEN}", headers=headers)  # token in an unknown path
    client.get("/items/2", headers={"x-request-id": "dapi" + "f" * 32})  # a token's shape
    client.get("/health", headers={"x-request-id": "3f2c-ok"})
    lines = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(lines) == 4
    for record in lines:
        assert TOKEN not in record.getMessage() and TOKEN not in str(record.fields)
        assert "dapi" + "f" * 32 not in str(record.fields)
    first, unknown, shaped, health = (r.fields for r in lines)
    assert first["request_id"] == "[REDACTED]" and first["user"] == "ada@example.com"
    assert unknown["route"] == "other" and unknown["path"] == "/nowhere/[REDACTED]"
    assert shaped["request_id"] == "[REDACTED]"
    assert health["request_id"] == "3f2c-ok" and health["route"] == "/health"


def test_error_code_of_takes_only_code_shaped_values() -> None:
    assert error_code_of(b'{"error":{"code":"not_found","message":"x"}}') == "not_found"
    assert error_code_of(b'{"error":{"code":"Robert\'); DROP"}}') == "http_error"
    assert error_code_of(b'{"detail":"Not Found"}') == "http_error"
    assert error_code_of(b"<html>") == "http_error"
    assert error_code_of(b"[1, 2]") == "http_error"


def test_a_route_that_opts_out_is_not_counted_but_still_logged(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        assert client.get("/probe").json() == {"ok": True}
    assert client.get("/items/a").status_code == 200
    samples = _samples(client)
    assert _count(samples, route="/probe") == 0
    assert _count(samples, route="other") == 0  # not counted under another label either
    assert _count(samples, route="/items/{item_id}") == 1
    assert "/probe" not in client.get("/metrics").text
    logged = [r.fields["route"] for r in caplog.records if hasattr(r, "fields")]
    assert logged.count("/probe") == 3
    info = client.get("/agent/info").json()
    routes = {r["path"]: r for r in info["extensions"]["routes"]}
    assert routes["/probe"]["metered"] is False and routes["/items/{item_id}"]["metered"]


_LAZY_SDK = r'''
import sys, time
from fastapi.testclient import TestClient
from mlflow_app_agent import Agent
from mlflow_app_agent.server import create_app

agent = Agent("lazy")

@agent.invoke_method
def invoke(request):
    return {"output": [{"type": "message", "id": "m", "role": "assistant",
                        "content": [{"type": "output_text", "text": "ok"}]}]}

SDK = ("opentelemetry.sdk.metrics", "opentelemetry.sdk.resources", "prometheus_client")
app = create_app(agent, tracing=False)
assert not [m for m in SDK if m in sys.modules], [m for m in SDK if m in sys.modules]
if sys.argv[1] == "scrape":  # no lifespan, no warm-up: the first scrape builds the exporters
    text = TestClient(app).get("/metrics").text
    assert "agent_build_info" in text, text
else:  # the warm-up after /ready builds them
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        deadline = time.monotonic() + 120
        while app.state.telemetry.metrics.provider is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.state.telemetry.metrics.provider is not None
        assert "agent_requests_total" in client.get("/metrics").text
print("OK")
'''


@pytest.mark.parametrize("when", ["scrape", "warm-up"])
def test_the_metrics_sdk_loads_after_ready_not_before(when: str) -> None:
    """Building the app imports neither the OTel metrics SDK nor the Prometheus exporter
    (~100 ms of start-up before /ready); they load in the warm-up after /ready, or at the
    first scrape, and then /metrics answers as before."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _LAZY_SDK, when], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-3000:]
