"""The properties' own logic: seeded runs, failures that do not reproduce, and how the
malformed-input property judges a target that accepts, crashes on or times out on bad input.
Targets here are user-written :class:`Target` subclasses (the documented extension point)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mlflow_app_agent import Agent
from mlflow_app_agent.errors import AgentExecutionError, ValidationFailure
from mlflow_app_agent.testing import check_agent
from mlflow_app_agent.testing.properties import run_property
from mlflow_app_agent.testing.targets import AgentTarget, StreamResult, Target

from . import agents


class InvokeTarget(Target):
    """A target whose invoke is ``answer(request)``; it cannot stream."""

    description = "custom target"

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.answer = answer
        self.calls = 0

    def invoke(self, request: Any, *, endpoint: str | None = None) -> Any:
        self.calls += 1
        return self.answer(request)

    def stream(self, request: Any, *, endpoint: str | None = None) -> StreamResult:
        raise NotImplementedError


def accepts_everything(request: Any) -> Any:
    return {"output": [agents.message("sure")]}


def server_error(request: Any) -> Any:
    raise AgentExecutionError("the agent failed")


def times_out(request: Any) -> Any:
    raise ValidationFailure("invoke did not return within 0.1 s")


def crashes(request: Any) -> Any:
    return request["input"][0]["content"]  # a KeyError/TypeError on odd shapes


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (accepts_everything, "was accepted"),
        (server_error, "raised AgentExecutionError (status 500): the agent failed"),
        (times_out, "invoke did not return within 0.1 s"),
        (crashes, "instead of a RequestError"),
    ],
)
def test_malformed_input_must_be_a_request_error(answer: Any, words: str) -> None:
    result = run_property(InvokeTarget(answer), "malformed", max_examples=30)
    assert not result.passed
    assert result.problem is not None and words in result.problem, result.problem
    assert result.problem.startswith("a malformed request (")
    assert set(result.counterexample) == {"kind", "request"}


def test_a_request_error_with_a_message_passes_malformed(echo_agent: Agent) -> None:
    result = run_property(AgentTarget(echo_agent), "malformed", max_examples=30)
    assert result.passed and result.examples >= 10, result.format()


def test_an_agent_refusing_broken_conversations_passes_every_property() -> None:
    """Like an LLM API (or LangGraph's tool node), the agent raises on an unanswered call;
    generated valid requests never contain one, the malformed probes do (issue 15)."""
    from mlflow_app_agent.testing.strategies import unanswered_calls

    strict = Agent("strict")

    @strict.invoke_method
    def _invoke(request: Any) -> Any:
        problems = unanswered_calls([i.model_dump(exclude_none=True) for i in request.input])
        if problems:
            raise ValueError("; ".join(problems))
        return {"output": [agents.message("ok")]}

    report = check_agent(strict, max_examples=40, raise_on_failure=False)
    assert report.ok, report.format()


def test_a_seed_gives_a_random_but_repeatable_run() -> None:
    def run(seed: int) -> list[str]:
        seen: list[str] = []

        def echo(request: Any) -> Any:
            seen.append(repr(request))
            return {"output": [agents.message("ok")]}

        result = run_property(InvokeTarget(echo), "invoke", max_examples=15, seed=seed)
        assert result.passed, result.format()
        return seen

    first = run(1234)
    assert len(first) > 5 and run(1234) == first
    assert run(99) != first


def test_a_failure_that_does_not_reproduce_is_reported_as_flaky() -> None:
    lock = threading.Lock()
    calls = [0]

    def fails_once(request: Any) -> Any:
        with lock:
            calls[0] += 1
            first_generated = calls[0] == 3  # after the explicit example and one more
        if first_generated:
            raise ConnectionResetError("the LLM endpoint dropped the connection")
        return {"output": [agents.message("fine")]}

    result = run_property(InvokeTarget(fails_once), "invoke", max_examples=20)
    assert not result.passed
    assert result.problem is not None
    assert "invoke raised ConnectionResetError: the LLM endpoint dropped" in result.problem
    assert result.problem.endswith("(flaky: this request did not fail again when replayed)")


def test_check_agent_reports_a_custom_target_by_its_description() -> None:
    report = check_agent(InvokeTarget(accepts_everything), properties=["invoke", "malformed"],
                         max_examples=10, raise_on_failure=False)
    assert report.target == "custom target"
    assert [r.name for r in report.failures] == ["malformed"]
    assert "malformed" in report.format() and "was accepted" in report.format()


def test_a_responses_agent_written_as_mlflow_documents_passes() -> None:
    """Issue 14 item 10: predict returns ``custom_outputs=request.custom_inputs`` and
    predict_stream none, as MLflow's ResponsesAgent guide writes it; a request with
    ``custom_inputs: {}`` made validate report "custom_outputs differ: invoke {}, stream
    null"."""
    from mlflow.pyfunc import ResponsesAgent
    from mlflow.types.responses import ResponsesAgentResponse, ResponsesAgentStreamEvent

    class Documented(ResponsesAgent):
        def predict(self, request: Any) -> ResponsesAgentResponse:  # type: ignore[override]
            outputs = [event.item for event in self.predict_stream(request)
                       if event.type == "response.output_item.done"]
            return ResponsesAgentResponse(output=outputs, custom_outputs=request.custom_inputs)

        def predict_stream(self, request: Any) -> Any:  # type: ignore[override]
            text = agents.last_text(request) or "hello"
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=text, item_id="m"))
            yield ResponsesAgentStreamEvent(  # type: ignore[call-arg]
                type="response.output_item.done",
                item=self.create_text_output_item(text=text, id="m"))

    agent = Documented()
    report = check_agent(agent, max_examples=40, raise_on_failure=False)
    assert report.ok, report.format()
    # the request that used to fail, on its own
    result = agent.predict({"input": [{"role": "user", "content": "x"}], "custom_inputs": {}})
    assert result.custom_outputs == {}
