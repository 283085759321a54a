"""The HTTP contract, in-process (Starlette's TestClient runs the app's lifespan)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mlflow_app_agent.server import create_app

from . import agents

MSG = {"input": [{"role": "user", "content": "hello there"}]}
JSON_TYPE = {"content-type": "application/json"}


def client_for(agent: Any, **settings: Any) -> TestClient:
    settings.setdefault("tracing", False)
    return TestClient(create_app(agent, **settings), raise_server_exceptions=False)


@pytest.fixture
def echo() -> Iterator[TestClient]:
    with client_for(agents.echo) as c:
        yield c


def sse_events(text: str) -> list[Any]:
    """The JSON events of an SSE body (parsed by httpx-sse), which must end with [DONE]."""
    from httpx_sse import EventSource

    body = httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=text.encode())
    frames = [sse.data for sse in EventSource(body).iter_sse()]
    assert frames[-1] == "[DONE]", text
    return [json.loads(f) for f in frames[:-1]]


def assert_error(resp: Any, status: int, code: str, *words: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == code
    assert err["request_id"] == resp.headers["x-request-id"]
    for word in words:
        assert word in err["message"]
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    return err


def test_invoke_returns_response_and_request_id(echo: TestClient) -> None:
    resp = echo.post("/invocations", json=MSG)
    assert resp.status_code == 200
    assert resp.json()["output"][0]["content"][0]["text"] == "hello there"
    assert len(resp.headers["x-request-id"]) == 32


def test_forwarded_headers_fill_request_context(echo: TestClient) -> None:
    resp = echo.post("/invocations", json=MSG, headers={
        "X-Forwarded-Email": "ada@example.com", "X-Request-Id": "req-42",
        "X-Forwarded-Access-Token": "dapi-secret-token"})
    assert resp.headers["x-request-id"] == "req-42"
    custom = resp.json()["custom_outputs"]
    assert custom == {"user": "ada@example.com", "request_id": "req-42", "has_token": True}
    assert "dapi-secret-token" not in resp.text


def test_a_repeated_forwarded_header_counts_by_its_first_value(echo: TestClient) -> None:
    # the Apps proxy's header comes first; a value a client appends must not win
    resp = echo.post("/invocations", content=json.dumps(MSG), headers=[
        ("content-type", "application/json"), ("x-forwarded-email", "proxy@example.com"),
        ("x-forwarded-email", "spoof@example.com"), ("x-request-id", "first"),
        ("x-request-id", "second")])
    assert resp.json()["custom_outputs"]["user"] == "proxy@example.com"
    assert resp.headers["x-request-id"] == "first"


def test_unsafe_request_id_is_replaced(echo: TestClient) -> None:
    resp = echo.post("/invocations", json=MSG, headers={"X-Request-Id": "a b\tc" * 50})
    assert resp.headers["x-request-id"] != "a b\tc" * 50


@pytest.mark.parametrize("how", ["flag", "accept"])
def test_stream_by_flag_or_accept_header(echo: TestClient, how: str) -> None:
    if how == "flag":
        resp = echo.post("/invocations", json={**MSG, "stream": True})
    else:
        resp = echo.post("/invocations", json=MSG, headers={"Accept": "text/event-stream"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = sse_events(resp.text)
    assert [e["delta"] for e in events[:-1]] == ["hello ", "there "]
    assert events[-1]["type"] == "response.output_item.done"


def test_stream_false_wins_over_accept(echo: TestClient) -> None:
    resp = echo.post("/invocations", json={**MSG, "stream": False},
                     headers={"Accept": "text/event-stream"})
    assert resp.headers["content-type"] == "application/json"


def test_async_agent_invoke_and_stream() -> None:
    with client_for(agents.async_echo) as c:
        assert c.post("/invocations", json=MSG).json()["output"][0]["content"][0]["text"] == (
            "hello there")
        events = sse_events(c.post("/invocations", json={**MSG, "stream": True}).text)
        assert [e.get("delta") for e in events] == ["t0", "t1", "t2", None]


def test_responses_adds_openai_envelope(echo: TestClient) -> None:
    body = echo.post("/responses", json={"model": "m", "input": "hi", "instructions": "be"}).json()
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["id"].startswith("resp_") and isinstance(body["created_at"], int)
    assert body["model"] == "m"
    assert body["output"][0]["content"][0]["text"] == "hi"


def test_responses_stream_has_lifecycle(echo: TestClient) -> None:
    events = sse_events(echo.post("/responses", json={"input": "a b", "stream": True}).text)
    types = [e["type"] for e in events]
    assert types == [
        "response.created", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_item.done", "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["response"]["output"][0]["id"] == "msg_1"
    assert events[0]["response"]["id"] == events[-1]["response"]["id"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, ["not valid JSON", "line 1"]),
        (b"", 400, ["empty"]),
        (b"[1, 2]", 400, ["JSON object", "array"]),
        (b'{"input": "text"}', 422, ["request.input", "list"]),
        (b'{"messages": []}', 422, ["request.input", "required"]),
        (b'{"input": [{"role": 7, "content": "x"}]}', 422, ["request.input.0"]),
        (b'{"input": [], "stream": "yes"}', 422, ["request.stream"]),
        (b'{"input": [], "temperature": "hot"}', 422, ["request.temperature"]),
        # nesting the JSON decoder survives but validation and tracing would not
        (b'{"input": [], "custom_inputs": {"a": ' + b"[" * 500 + b"]" * 500 + b"}}", 400,
         ["nests deeper than 64 levels"]),
        # nesting beyond the decoder's own recursion limit
        (b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, ["nested too deeply"]),
    ],
)
def test_bad_requests_name_the_problem(
    echo: TestClient, body: bytes, status: int, words: list[str]
) -> None:
    resp = echo.post("/invocations", content=body, headers={"content-type": "application/json"})
    code = "invalid_request"
    assert_error(resp, status, code, *words)


def test_body_over_limit_is_413() -> None:
    with client_for(agents.echo) as c:
        resp = c.post("/invocations", content=b"x" * (5 * 1024 * 1024), headers=JSON_TYPE)
        assert_error(resp, 413, "payload_too_large", "4194304", "--max-body-bytes")
    with client_for(agents.echo, max_body_bytes=100) as c:
        # Chunked (no Content-Length): enforced while reading.
        resp = c.post("/invocations", content=iter([b'{"input": [', b" " * 200, b"]}"]),
                      headers=JSON_TYPE)
        assert_error(resp, 413, "payload_too_large")
        assert c.post("/invocations", json={"input": [{"role": "user", "content": "x"}]}).status_code == 200


def test_agent_exception_is_structured_500() -> None:
    with client_for(agents.broken) as c:
        err = assert_error(c.post("/invocations", json=MSG), 500, "agent_error",
                           "RuntimeError", "database unreachable")
        assert "Traceback" not in err["message"]


def test_stream_that_fails_at_once_gets_a_real_status() -> None:
    with client_for(agents.broken) as c:
        resp = c.post("/invocations", json={**MSG, "stream": True})
        assert_error(resp, 500, "agent_error", "model crashed")


@pytest.mark.parametrize("path", ["/invocations", "/responses"])
def test_stream_that_fails_later_sends_error_event_then_done(path: str) -> None:
    with client_for(agents.broken) as c:
        resp = c.post(path, json={"input": [{"role": "user", "content": "late"}],
                                  "stream": True})
        assert resp.status_code == 200
        events = sse_events(resp.text)
        assert events[-1]["type"] == "error"
        assert events[-1]["code"] == "agent_error" and "model crashed" in events[-1]["message"]
        assert events[-1]["error"]["request_id"] == resp.headers["x-request-id"]
        assert any(e.get("delta") == "partial" for e in events)


def test_token_never_echoed_in_errors() -> None:
    with client_for(agents.leaky) as c:
        resp = c.post("/invocations", json=MSG,
                      headers={"X-Forwarded-Access-Token": "dapi-very-secret"})
        err = assert_error(resp, 500, "agent_error", "PermissionError", "[REDACTED]")
        assert "dapi-very-secret" not in json.dumps(err)


def test_invalid_agent_output_is_500() -> None:
    with client_for(agents.bad_output) as c:
        assert_error(c.post("/invocations", json=MSG), 500, "agent_error", "output")


def test_timeout_is_504_for_invoke_and_stream() -> None:
    slow_msg = {"input": [{"role": "user", "content": "2"}]}
    with client_for(agents.slow, request_timeout=0.3) as c:
        assert_error(c.post("/invocations", json=slow_msg), 504, "timeout",
                     "within the request timeout of 0.3 s", "--timeout")
        events = sse_events(c.post("/invocations", json={**slow_msg, "stream": True}).text)
        assert events[0]["delta"] == "first"
        assert events[-1]["type"] == "error" and events[-1]["code"] == "timeout"
        assert "of 0.3 s" in events[-1]["message"]
        # The server still answers while abandoned threads finish.
        assert c.get("/health").status_code == 200


def test_timeout_before_the_first_event_is_a_504() -> None:
    import time

    from mlflow_app_agent import Agent

    late = Agent("late")

    @late.stream_method
    def _late(request: Any) -> Any:
        time.sleep(1.0)
        yield {"type": "response.output_text.delta", "item_id": "m", "delta": "too late"}

    with client_for(late, request_timeout=0.2) as c:
        assert_error(c.post("/invocations", json={**MSG, "stream": True}), 504, "timeout",
                     "of 0.2 s")


def test_an_agents_own_timeout_error_is_an_agent_error_not_a_504() -> None:
    # Only the server's deadline is a 504 "timeout"; an upstream call that timed out inside
    # the agent is the agent failing, with its message.
    with client_for(agents.impatient, request_timeout=30) as c:
        assert_error(c.post("/invocations", json=MSG), 500, "agent_error",
                     "TimeoutError: upstream LLM call timed out")
        at_once = {"input": [{"role": "user", "content": "at once"}], "stream": True}
        assert_error(c.post("/invocations", json=at_once), 500, "agent_error", "TimeoutError")
        events = sse_events(c.post("/invocations", json={**MSG, "stream": True}).text)
        assert events[0]["delta"] == "partial"
        assert events[-1]["type"] == "error" and events[-1]["code"] == "agent_error"
        assert "upstream LLM call timed out" in events[-1]["message"]


def test_require_auth() -> None:
    with client_for(agents.echo, require_auth=True) as c:
        assert_error(c.post("/invocations", json=MSG), 401, "unauthenticated", "X-Forwarded")
        ok = c.post("/invocations", json=MSG, headers={"X-Forwarded-User": "u1"})
        assert ok.status_code == 200
        assert c.get("/health").status_code == 200  # probes stay open


def test_health_ready_info(echo: TestClient) -> None:
    assert echo.get("/health").json() == {"status": "ok"}
    assert echo.get("/ping").status_code == 200
    assert echo.get("/ready").json() == {"status": "ready", "agent": "echo"}
    info = echo.get("/agent/info").json()
    assert info["name"] == "echo"
    assert info["interfaces"]["native"] == ["invoke", "stream"]
    assert info["versions"]["mlflow"] and info["versions"]["mlflow_app_agent"]
    assert set(info["git"]) >= {"commit", "branch", "dirty"}
    assert info["tracing"]["enabled"] is False


def test_unknown_route_and_method_use_error_envelope(echo: TestClient) -> None:
    assert echo.get("/nope").json()["error"]["code"] == "not_found"
    resp = echo.get("/invocations")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_openapi_describes_agent_routes(echo: TestClient) -> None:
    paths = echo.get("/openapi.json").json()["paths"]
    assert "post" in paths["/invocations"] and "post" in paths["/responses"]


def test_openapi_uses_mlflows_schemas_and_the_error_envelope(echo: TestClient) -> None:
    import jsonschema
    import schemathesis

    doc = echo.get("/openapi.json").json()
    labels = [op.ok().label for op in schemathesis.openapi.from_dict(doc).get_all_operations()]
    assert {"POST /invocations", "POST /responses", "GET /agent/info"} <= set(labels)

    def validator(schema: dict[str, Any]) -> Any:
        return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})

    op = doc["paths"]["/invocations"]["post"]
    request = validator(op["requestBody"]["content"]["application/json"]["schema"])
    assert request.is_valid(MSG) and request.is_valid({**MSG, "stream": True})
    assert not request.is_valid({"input": "hello"})
    assert not request.is_valid({**MSG, "stream": "yes"})
    answer = echo.post("/invocations", json=MSG).json()
    assert validator(op["responses"]["200"]["content"]["application/json"]["schema"]) \
        .is_valid(answer)
    error = echo.post("/invocations", json={"input": "hello"})
    assert error.status_code == 422
    error_schema = op["responses"]["422"]["content"]["application/json"]["schema"]
    assert validator(error_schema).is_valid(error.json())
    assert not validator(error_schema).is_valid(answer)


def test_bad_location_reports_on_ready(tmp_path: Any) -> None:
    with client_for(str(tmp_path / "missing.py")) as c:
        # "still loading (loading .../missing.py)" names the file too: wait for the verdict
        deadline = time.monotonic() + 60
        while (resp := c.get("/ready")).json()["error"]["code"] == "not_ready":
            assert time.monotonic() < deadline, resp.text
            time.sleep(0.02)
        assert resp.status_code == 503
        assert resp.json()["error"]["code"] == "model_load_error"
        # Same code as /ready: a load failure is not "retry later" (not_ready).
        err = assert_error(c.post("/invocations", json=MSG), 503, "model_load_error",
                           "failed to load")
        assert "missing.py" in err["message"]
        err = assert_error(c.post("/responses", json={"input": "hi"}), 503, "model_load_error",
                           "failed to load")


def test_serves_a_python_file_by_name(agents_path: Any) -> None:
    with client_for(f"{agents_path}:async_echo") as c:
        for _ in range(200):
            if c.get("/ready").status_code == 200:
                break
        assert c.post("/invocations", json=MSG).status_code == 200
        assert c.get("/agent/info").json()["name"] == "async-echo"


def test_serves_a_responses_agent() -> None:
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentResponse

    class Hello(ResponsesAgent):
        def predict(self, request: Any) -> ResponsesAgentResponse:
            return ResponsesAgentResponse(output=[self.create_text_output_item("hey", "m1")])

    with client_for(Hello()) as c:
        assert c.post("/invocations", json=MSG).json()["output"][0]["content"][0]["text"] == "hey"
        events = sse_events(c.post("/invocations", json={**MSG, "stream": True}).text)
        assert events[0]["type"] == "response.output_item.done"


def test_user_middleware_still_sees_agent_routes() -> None:
    seen: list[str] = []
    app = create_app(agents.echo, tracing=False)

    @app.middleware("http")
    async def record(request: Any, call_next: Any) -> Any:
        seen.append(request.url.path)
        return await call_next(request)

    with TestClient(app) as c:
        assert c.post("/invocations", json=MSG).status_code == 200
        events = sse_events(c.post("/responses", json={"input": "a", "stream": True}).text)
        assert events[-1]["type"] == "response.completed"
    assert seen == ["/invocations", "/responses"]


def test_unknown_route_names_the_path_and_the_routes(echo: TestClient) -> None:
    # The OpenAI habit of base_url=".../v1" is the most common way to end up here.
    err = assert_error(echo.post("/v1/responses", json={"input": "hi"}), 404, "not_found",
                       "POST /v1/responses", "POST /responses", "without /v1")
    assert err["request_id"]
    err = assert_error(echo.get("/nope", headers={"X-Request-Id": "rid-1"}), 404, "not_found",
                       "GET /nope", "/invocations", "/agent/info")
    assert err["request_id"] == "rid-1"
    err = assert_error(echo.get("/responses"), 405, "method_not_allowed", "GET /responses",
                       "POST")
