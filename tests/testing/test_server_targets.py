"""check_agent against running servers (real uvicorn on 127.0.0.1): our server with the
quickstart echo agent passes; a naive server that 500s on odd input and broken agents behind
our server fail with a clear counterexample."""

from __future__ import annotations

import pytest

from mlflow_app_agent.errors import ValidationFailure
from mlflow_app_agent.testing import check_agent
from mlflow_app_agent.testing.targets import ServerTarget

from . import agents
from .servers import naive_app, serve

pytestmark = pytest.mark.e2e


def test_echo_server_passes_every_property(echo_server_url: str) -> None:
    # each example is HTTP round trips to a live server; 20 per property (derandomized) keep
    # every property and both endpoints, at a third of the cost of 60
    report = check_agent(echo_server_url, max_examples=20)
    assert report.ok, report.format()
    assert report.target == f"server {echo_server_url}"


def test_both_agent_endpoints_are_exercised(echo_server_url: str) -> None:
    with ServerTarget(echo_server_url) as target:
        target.ping()
        assert target.endpoints == ("/invocations", "/responses")


def test_stream_of_the_echo_server_parses_sse_to_done(echo_server_url: str) -> None:
    with ServerTarget(echo_server_url) as target:
        result = target.stream({"input": [{"role": "user", "content": "a b c"}]})
    assert result.ended and result.problem is None
    assert [e["type"] for e in result.events][-1] == "response.output_item.done"
    deltas = [e["delta"] for e in result.events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "a b c"


def test_naive_server_that_500s_on_bad_json_fails_with_the_body(echo_agent) -> None:  # type: ignore[no-untyped-def]
    with serve(naive_app(echo_agent)) as url:
        with pytest.raises(ValidationFailure) as info:
            check_agent(url, max_examples=40)
    report = info.value.report  # type: ignore[attr-defined]
    assert [r.name for r in report.failures] == ["malformed"]
    result = report.failures[0]
    assert result.endpoint == "/invocations"  # the naive server has no /responses
    assert "got 500 (a server error), not a 4xx" in result.problem
    assert result.counterexample["kind"] in {"bad_json", "truncated_json", "empty_body"}
    assert "minimal counterexample to /invocations" in info.value.message


def test_tidy_naive_server_passes(echo_agent) -> None:  # type: ignore[no-untyped-def]
    with serve(naive_app(echo_agent, crash_on_bad_json=False)) as url:
        report = check_agent(url, max_examples=20, properties=["malformed"])
    assert report.ok, report.format()


def test_agent_raising_behind_our_server_is_reported_with_its_500() -> None:
    from mlflow_app_agent.server import create_app

    app = create_app(agents.raises_on_custom_inputs(), tracing=False)
    with serve(app, ready_path="/ready") as url:
        with pytest.raises(ValidationFailure) as info:
            check_agent(url, max_examples=30, properties=["invoke"])
    result = info.value.report.failures[0]  # type: ignore[attr-defined]
    assert result.counterexample == {
        "input": [{"role": "user", "content": "Hello!"}],
        "custom_inputs": {},
    }
    assert "answered 500" in result.problem and "agent_error" in result.problem
    assert "Traceback" not in result.problem


def test_stream_without_done_behind_our_server_fails() -> None:
    from mlflow_app_agent.server import create_app

    app = create_app(agents.stream_without_done(), tracing=False)
    with serve(app, ready_path="/ready") as url:
        report = check_agent(url, max_examples=10, properties=["stream"], raise_on_failure=False)
    assert "no 'response.output_item.done' event" in report.failures[0].problem


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ValidationFailure, match="failed: ConnectError"):
        check_agent("http://127.0.0.1:9", max_examples=1, timeout=2)


HELLO_JSON = b'{"input": [{"role": "user", "content": "hi"}]}'
MUST_REJECT = {
    "bad_json": b"{input: []}",
    "truncated_json": HELLO_JSON[:20],
    "invalid_utf8": b'{"input": [{"role": "user", "content": "\xff\xfe"}]}',
    "empty_body": b"",
    "trailing_garbage": HELLO_JSON + b"}",
    "not_object": b"[1, 2]",
    "missing_input": b'{"messages": [{"role": "user", "content": "hi"}]}',
    "input_not_list": b'{"input": "hi"}',
    "item_not_object": b'{"input": [42]}',
    "unknown_role": b'{"input": [{"role": "robot", "content": "hi"}]}',
    "missing_content": b'{"input": [{"role": "user"}]}',
    "content_wrong_type": b'{"input": [{"role": "user", "content": 42}]}',
    "unknown_item_type": b'{"input": [{"type": "teleport"}]}',
    "wrong_field_type": b'{"input": [{"role": "user", "content": "hi"}], "temperature": "hot"}',
    "huge_string": b'{"input": [{"role": "user", "content": "' + b"x" * 6_000_000 + b'"}]}',
    "deep_nesting": b'{"input": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
}
# Odd but valid for MLflow's schema: a server may answer 2xx or 4xx, never 5xx.
EDGE = {
    "empty_input": b'{"input": []}',
    "text_plain": HELLO_JSON,
    "nan": b'{"input": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "many_items": b'{"input": ['
    + b",".join([b'{"role": "user", "content": "hi"}'] * 10_000)
    + b"]}",
}


@pytest.mark.parametrize("kind", sorted(MUST_REJECT))
def test_our_server_rejects_each_malformed_class(echo_server_url: str, kind: str) -> None:
    from mlflow_app_agent.testing.checks import rejection_problems
    from mlflow_app_agent.testing.malformed import body_rejected

    body = MUST_REJECT[kind]
    assert body_rejected(body) or kind == "huge_string"  # over the server's 4 MiB limit
    with ServerTarget(echo_server_url) as target:
        resp = target.post_raw(body, "application/json")
    assert 400 <= resp.status < 500, (resp.status, resp.text[:300])
    assert rejection_problems(resp.status, resp.content_type, resp.text,
                              must_reject=True, what=kind) == []  # fmt: skip


@pytest.mark.parametrize("kind", sorted(EDGE))
def test_our_server_never_5xx_on_odd_but_valid_bodies(echo_server_url: str, kind: str) -> None:
    from mlflow_app_agent.testing.checks import rejection_problems

    ctype = "text/plain" if kind == "text_plain" else "application/json"
    with ServerTarget(echo_server_url) as target:
        resp = target.post_raw(EDGE[kind], ctype)
    assert resp.status < 500, resp.text[:300]
    assert rejection_problems(resp.status, resp.content_type, resp.text,
                              must_reject=False, what=kind) == []  # fmt: skip
