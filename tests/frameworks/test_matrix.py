"""The framework matrix of issue 15: a LangGraph agent and an OpenAI Agents SDK agent, each
talking to a scripted OpenAI-compatible LLM on loopback, taken the way a user takes them:
log + register -> serve (a real uvicorn process) -> the official ``openai`` client against
``/responses`` (invoke, stream, ``responses.stream().get_final_response()``) -> validate
(hypothesis) -> materialize -> the app pins the framework -> run-local answers the same.

Every expensive step happens once per framework (session fixtures in conftest.py).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.utils import canonicalize_name

from .conftest import Framework
from .scripted_llm import FAIL, FAIL_MESSAGE, ScriptedLLM, call_id_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CITY = "Paris"
ANSWER = "Forecast: sunny in Paris."
TOOL_ROUND = ["function_call", "function_call_output", "message"]


def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(base_url=url, api_key="unused-locally", max_retries=0, timeout=60)


def _tool_round(output: list[Any]) -> list[Any]:
    assert [item.type for item in output] == TOOL_ROUND, output
    call, result, message = output
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": CITY}
    assert call.call_id == call_id_for(CITY)  # the LLM's id, passed through
    assert result.call_id == call.call_id and result.output == f"sunny in {CITY}"
    assert message.role == "assistant"
    return [call.call_id, result.output, message.content[0].text]


def openai_client_round(url: str) -> list[Any]:
    """The three ways the openai client talks to /responses; all give the same tool round."""
    client = _client(url)
    created = client.responses.create(model="agent", input=CITY)
    assert created.output_text == ANSWER
    answer = _tool_round(created.output)

    events = list(client.responses.create(model="agent", input=CITY, stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert _tool_round(events[-1].response.output) == answer
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == ANSWER  # streamed as deltas, not one blob
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert added == done == [0, 1, 2]

    with client.responses.stream(model="agent", input=CITY) as stream:
        final = stream.get_final_response()
    assert final.output_text == ANSWER
    assert _tool_round(final.output) == answer
    return answer


@pytest.fixture(scope="session")
def served_answer(served: str) -> list[Any]:
    return openai_client_round(served)


def test_openai_client_gets_the_tool_round_from_the_served_agent(
    served_answer: list[Any], scripted_llm: tuple[str, ScriptedLLM],
) -> None:
    assert served_answer == [call_id_for(CITY), f"sunny in {CITY}", ANSWER]
    # the tool's result reached the LLM as a tool message answering the call
    tool_turns = [m for r in scripted_llm[1].requests for m in r["messages"]
                  if m.get("role") == "tool" and m.get("tool_call_id") == call_id_for(CITY)]
    assert tool_turns


def test_invocations_shows_the_tool_call_as_items_streamed_and_not(served: str) -> None:
    body = {"input": [{"role": "user", "content": CITY}]}
    invoked = httpx.post(f"{served}/invocations", json=body, timeout=60)
    assert invoked.status_code == 200, invoked.text
    assert [i["type"] for i in invoked.json()["output"]] == TOOL_ROUND
    with httpx.stream("POST", f"{served}/invocations", json={**body, "stream": True},
                      timeout=60) as response:
        frames = [line[len("data: "):] for line in response.iter_lines()
                  if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    done = [e["item"]["type"] for e in map(json.loads, frames[:-1])
            if e["type"] == "response.output_item.done"]
    assert done == TOOL_ROUND


def test_an_llm_error_is_an_agent_error_with_the_frameworks_message(served: str) -> None:
    import openai

    with pytest.raises(openai.APIStatusError) as caught:
        _client(served).responses.create(model="agent", input=f"{FAIL} now")
    assert caught.value.status_code == 500
    assert FAIL_MESSAGE in str(caught.value.message), caught.value.body
    # the server is fine afterwards
    assert _client(served).responses.create(model="agent", input=CITY).output_text == ANSWER


def test_validate_passes_against_the_served_agent(served: str) -> None:
    from mlflow_app_agent.testing import check_agent

    # LLM-backed agents are declared non-deterministic in real use; the script is
    # deterministic, so stream == invoke is checked too
    report = check_agent(served, max_examples=10, raise_on_failure=False)
    assert report.ok, report.format()
    assert len(report.results) == 4


def _app_pins(app_dir: Path) -> dict[str, str]:
    """``{canonical name: version}`` of what the app directory pins exactly: uv.lock when
    the app is a uv project, else requirements.txt's ``name==version`` lines."""
    lock = app_dir / "uv.lock"
    if lock.is_file():
        import tomllib

        packages = tomllib.loads(lock.read_text()).get("package", [])
        return {canonicalize_name(p["name"]): p["version"] for p in packages if "version" in p}
    pins = {}
    for line in (app_dir / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line.strip())
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(3)
    return pins


def test_app_pins_what_the_agent_imports_at_the_logged_versions(
    framework: Framework, app_dir: Path,
) -> None:
    pins = _app_pins(app_dir)
    for dist in framework.direct:
        assert pins.get(canonicalize_name(dist)) == importlib.metadata.version(dist), (
            dist, sorted(pins))


def test_app_pins_the_frameworks_dependencies_too(
    framework: Framework, app_dir: Path, request: pytest.FixtureRequest,
) -> None:
    if not (app_dir / "uv.lock").is_file():
        # main's requirements.txt pins the model's lines and the toolkit's closure only; the
        # uv-resolved lock of issue 11 (branch lean-artifact) pins the agent's closure too
        request.applymarker(pytest.mark.xfail(
            strict=True, reason="issue 15.3: requirements.txt does not pin the agent's "
            "transitive closure until the uv-resolved app lock (issue 11) lands"))
    pins = _app_pins(app_dir)
    unpinned = [d for d in framework.transitive if canonicalize_name(d) not in pins]
    assert unpinned == []


def test_app_pins_match_this_environment(app_dir: Path) -> None:
    """Every exact pin of a requirements.txt app is the version installed here, so the
    seeded run-local venv (this environment) is what the app's requirements describe."""
    if (app_dir / "uv.lock").is_file():
        pytest.skip("a uv-mode app: run-local installs its lock for real (no seeded venv)")
    wrong = {}
    for name, version in _app_pins(app_dir).items():
        try:
            here = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # a platform-specific package (the uv lock covers other targets)
        if here != version:
            wrong[name] = (version, here)
    assert wrong == {}


def test_run_local_of_the_materialized_app_answers_the_same(
    local_app: str, served_answer: list[Any],
) -> None:
    assert openai_client_round(local_app) == served_answer
    info = httpx.get(f"{local_app}/agent/info", timeout=10).json()
    assert info["registered_model"]["version"] == "1"
