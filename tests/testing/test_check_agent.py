"""check_agent on in-process agents: the quickstart echo passes; each broken agent fails with
a clear, minimal counterexample."""

from __future__ import annotations

import json

import pytest

from mlflow_app_agent.errors import ValidationFailure
from mlflow_app_agent.testing import CheckReport, check_agent

from . import agents

HELLO = {"input": [{"role": "user", "content": "Hello!"}]}


def _failure(agent, **kwargs) -> tuple[str, CheckReport]:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailure) as info:
        check_agent(agent, max_examples=25, **kwargs)
    report = info.value.report  # type: ignore[attr-defined]
    assert not report.ok
    return info.value.message, report


def _result(report: CheckReport, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in report.results if r.name == name)


def test_echo_agent_passes(echo_agent) -> None:  # type: ignore[no-untyped-def]
    report = check_agent(echo_agent, max_examples=30)
    assert report.ok, report.format()
    assert [r.name for r in report.results] == ["invoke", "stream", "consistency", "malformed"]
    assert all(r.examples >= 25 for r in report.results)
    assert "OK: agent 'echo'" in report.format()


def test_plain_responses_agent_passes(tracking_uri) -> None:  # type: ignore[no-untyped-def]
    assert check_agent(agents.responses_agent_echo(), max_examples=20).ok


def test_wrong_output_shape_fails_on_the_simplest_request() -> None:
    message, report = _failure(agents.wrong_output_shape())
    invoke = _result(report, "invoke")
    assert invoke.counterexample == HELLO
    assert "not a valid ResponsesAgentResponse" in invoke.problem
    assert "output.0.id: Field required" in invoke.problem
    assert "minimal counterexample" in message and '"content": "Hello!"' in message


def test_stream_without_done_event_fails() -> None:
    _, report = _failure(agents.stream_without_done())
    assert _result(report, "invoke").passed
    stream = _result(report, "stream")
    assert "no 'response.output_item.done' event" in stream.problem
    assert stream.counterexample == HELLO


def test_stream_and_invoke_disagree_shrinks_to_a_digit() -> None:
    _, report = _failure(agents.stream_disagrees(), properties=["consistency"])
    result = _result(report, "consistency")
    assert "differ from invoke's output" in result.problem
    assert '"text": "0"' in result.problem and '"text": "0!"' in result.problem
    # Shrunk: one user message whose text is the digit "0"; no optional fields.
    example = result.counterexample
    assert set(example) == {"input"} and len(example["input"]) == 1
    assert "0" in json.dumps(example["input"][0]["content"])


def test_non_deterministic_agents_skip_the_consistency_property() -> None:
    report = check_agent(agents.stream_disagrees(), max_examples=10, deterministic=False)
    assert report.ok
    assert [r.name for r in report.results] == ["invoke", "stream", "malformed"]
    assert any("non-deterministic" in s for s in report.skipped)


def test_agent_that_raises_on_some_inputs_fails_with_that_input() -> None:
    _, report = _failure(agents.raises_on_custom_inputs(), properties=["invoke"])
    result = _result(report, "invoke")
    assert result.problem == "invoke raised KeyError: 'session_id'"
    assert result.counterexample == {**HELLO, "custom_inputs": {}}


def test_deltas_that_do_not_add_up_fail() -> None:
    _, report = _failure(agents.deltas_mismatch(), properties=["stream"])
    result = _result(report, "stream")
    assert "text deltas of item 'msg-1' add up to" in result.problem
    assert " " in json.dumps(result.counterexample)  # needs a space to show the bug


def test_endless_stream_is_cut_off() -> None:
    _, report = _failure(agents.endless_stream(), properties=["stream"])
    assert "did not end after 10000 events" in _result(report, "stream").problem


def test_hanging_agent_times_out_quickly() -> None:
    _, report = _failure(agents.hangs(), properties=["invoke", "stream"], timeout=0.5)
    assert "did not return within 0.5 s" in _result(report, "invoke").problem
    # Once stuck, later calls fail at once instead of each waiting for the timeout.
    assert "not run: an earlier invoke did not return" in _result(report, "stream").problem
    assert sum(r.seconds for r in report.results) < 5


def test_raise_on_failure_false_returns_the_report() -> None:
    report = check_agent(
        agents.wrong_output_shape(), max_examples=5, raise_on_failure=False,
        properties=["invoke", "stream", "consistency"],
    )  # fmt: skip
    assert not report.ok and len(report.failures) == 3
    assert report.format().splitlines()[-1] == "3 of 3 FAILED: agent 'wrong-shape'"


def test_unknown_property_is_a_clear_error(echo_agent) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unknown properties \\['speed'\\]"):
        check_agent(echo_agent, properties=["speed"])


def test_runs_are_repeatable(echo_agent) -> None:  # type: ignore[no-untyped-def]
    seen: list[list[str]] = []
    from mlflow_app_agent.testing.targets import AgentTarget

    class Recording(AgentTarget):
        def invoke(self, request, *, endpoint=None):  # type: ignore[no-untyped-def]
            self.log.append(json.dumps(request, sort_keys=True))
            return super().invoke(request, endpoint=endpoint)

    for _ in range(2):
        target = Recording(echo_agent)
        target.log = []  # type: ignore[attr-defined]
        check_agent(target, max_examples=10, properties=["invoke"])
        seen.append(target.log)  # type: ignore[attr-defined]
    assert seen[0] == seen[1] and len(seen[0]) >= 10


def test_request_context_reaches_the_agent(echo_agent) -> None:  # type: ignore[no-untyped-def]
    from mlflow_app_agent import RequestContext, use_request_context
    from mlflow_app_agent.testing.targets import AgentTarget

    with use_request_context(RequestContext(user_email="ana@example.com")):
        response = AgentTarget(echo_agent).invoke(HELLO)
        assert check_agent(echo_agent, max_examples=5, properties=["consistency"]).ok
    text = response["output"][0]["content"][0]["text"]
    assert text == "Hello! (for ana@example.com)"


def test_volatile_item_ids_do_not_break_consistency() -> None:
    assert check_agent(agents.fresh_ids(), max_examples=15, properties=["consistency"]).ok
