"""The pure contract checks behind the properties: each returns the problems it finds, and
says what is wrong in words a user can act on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlflow_app_agent.testing.checks import (
    consistency_problems,
    item_text,
    normalize,
    rejection_problems,
    response_problems,
    stream_problems,
)


def message(text: str, item_id: str = "m1") -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def delta(text: str, item_id: str = "m1") -> dict[str, Any]:
    return {"type": "response.output_text.delta", "item_id": item_id, "delta": text}


def done(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.output_item.done", "item": item}


# --- (a) invoke output ------------------------------------------------------------------


def test_a_good_response_has_no_problems() -> None:
    assert response_problems({"output": [message("hi")]}) == []


@pytest.mark.parametrize(
    ("response", "words"),
    [
        ("hi", "invoke returned str, not a response object"),
        ({"output": [message("hi")], "custom_outputs": {"when": object()}},
         "not JSON-serializable"),
        ({"output": [{"type": "message", "role": "assistant", "content": "hi"}]},
         "not a valid ResponsesAgentResponse"),
        ({"output": []}, "has no output items (the agent did not answer)"),
    ],
)
def test_bad_responses_are_named(response: Any, words: str) -> None:
    problems = response_problems(response)
    assert len(problems) == 1 and words in problems[0], problems


def test_item_text_joins_output_text_parts_only() -> None:
    item = {"content": [{"type": "output_text", "text": "a"}, {"type": "refusal", "text": "no"},
                        "junk", {"type": "output_text", "text": "b"}]}
    assert item_text(item) == "ab"
    assert item_text({"content": None}) == ""


# --- (b) streams -------------------------------------------------------------------------


def test_a_good_stream_has_no_problems() -> None:
    assert stream_problems([delta("he"), delta("llo"), done(message("hello"))]) == []


def test_stream_problems_are_each_reported() -> None:
    problems = stream_problems([
        "data: not an event",
        {"type": "response.output_text.delta", "item_id": "m1"},  # no delta field
        {"type": "error", "code": "boom", "message": "upstream failed"},
        delta("hel"),
        done(message("hello")),
        delta("lo"),
        delta("orphan", item_id="m2"),
    ])
    assert problems[0] == "event 0 is str, not an event object"
    assert problems[1].startswith("event 1 is not a valid ResponsesAgentStreamEvent")
    assert problems[2] == "event 2 is an error event: 'upstream failed'"
    assert problems[3] == ("event 4: the text deltas of item 'm1' add up to \"hel\" but its "
                           "done item says \"hello\"")
    # "lo" after m1's done starts another item m1 (ids are not unique), which never ends
    assert problems[4].startswith("text deltas for item 'm1' but no "
                                  "'response.output_item.done' event after them")
    assert problems[5].startswith("text deltas for item 'm2' but no "
                                  "'response.output_item.done' event after them")
    assert len(problems) == 6


def test_items_sharing_an_id_are_checked_one_after_the_other() -> None:
    """The OpenAI Agents SDK gives every item the id "__fake_id__": a tool call, then a
    streamed message, then another streamed message, all with that id."""
    fake = "__fake_id__"
    call = {"type": "function_call", "id": fake, "call_id": "c1", "name": "f", "arguments": "{}"}
    events = [done(call), delta("hel", item_id=fake), delta("lo", item_id=fake),
              done({**message("hello"), "id": fake}), delta("bye", item_id=fake),
              done({**message("bye"), "id": fake})]
    assert stream_problems(events) == []
    wrong = [*events[:3], done({**message("help"), "id": fake})]
    assert stream_problems(wrong) == [
        "event 3: the text deltas of item '__fake_id__' add up to \"hello\" but its done "
        "item says \"help\""]


def test_an_empty_stream_did_not_answer_and_id_less_items_count_as_done() -> None:
    assert stream_problems([]) == [
        "the stream has no 'response.output_item.done' event (the agent did not answer)"]
    no_id = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    assert stream_problems([done(no_id)]) == []


# --- (c) consistency ---------------------------------------------------------------------


def test_normalize_drops_volatile_and_empty_fields() -> None:
    value = {"id": "x", "status": "completed", "n": None, "annotations": [],
             "kept": ({"item_id": 1, "text": "t"},)}
    assert normalize(value) == {"kept": [{"text": "t"}]}


def test_consistency_ignores_ids_but_not_text_or_custom_outputs() -> None:
    response = {"output": [message("same", "a")], "custom_outputs": {"n": 1}}
    events = [delta("same", "b"), done(message("same", "b")),
              {"type": "response.output_item.done", "item": message("extra", "c")}]
    assert consistency_problems({"output": [message("same", "a")]}, events[:2]) == []
    problems = consistency_problems(response, events)
    assert problems[0].startswith("the stream's done items differ from invoke's output:")
    assert '"extra"' in problems[0]
    assert problems[1] == 'custom_outputs differ: invoke {"n": 1}, stream null'


# --- (d) answers to malformed bodies -------------------------------------------------------


def error_json(message: str) -> str:
    return json.dumps({"error": {"code": "bad_request", "message": message}})


@pytest.mark.parametrize(
    ("status", "ctype", "text", "must_reject", "words"),
    [
        (400, "application/json", error_json("input is required"), True, None),
        (422, "application/json", error_json("input.0.role"), False, None),
        (200, "application/json", json.dumps({"output": [message("ok")]}), False, None),
        (500, "text/plain", "Internal Server Error", True,
         "body X got 500 (a server error), not a 4xx"),
        (400, "text/html", "<h1>Bad Request</h1>", True,
         'got 400 without a JSON body {"error": {"message": ...}}'),
        (400, "application/json", error_json("   "), True, "without a JSON body"),
        (400, "application/json", '{"error": "flat string"}', True, "without a JSON body"),
        (200, "application/json", error_json("x"), True,
         "was accepted with 200; it must be rejected with a 4xx"),
        (200, "application/json", "{not json", False, "got 200 with a body that is not JSON"),
        (200, "application/json", json.dumps({"output": []}), False, "has no output items"),
        (302, "text/plain", "", True, "body X got an unexpected status 302"),
    ],
)
def test_rejections(status: int, ctype: str, text: str, must_reject: bool,
                    words: str | None) -> None:
    problems = rejection_problems(status, ctype, text, must_reject=must_reject, what="body X")
    if words is None:
        assert problems == []
    else:
        assert len(problems) == 1 and words in problems[0], problems


def test_a_traceback_in_any_answer_is_a_problem() -> None:
    text = 'Traceback (most recent call last):\n  File "/app/server.py", line 3'
    problems = rejection_problems(400, "text/plain", text, must_reject=True, what="body Y")
    assert problems[0].startswith("the 400 answer to body Y contains a traceback")
    assert len(problems) == 2  # and it is no JSON error body either
    long = rejection_problems(503, "text/plain", "x" * 1000, must_reject=True, what="b")
    assert long[0].endswith("...") and len(long[0]) < 300


def test_a_clean_agent_error_is_accepted_only_for_broken_conversations() -> None:
    agent_error = json.dumps({"error": {"code": "agent_error", "message": "the agent raised "
                                        "ValueError: tool call c1 has no output"}})
    ok = rejection_problems(500, "application/json", agent_error, must_reject=False,
                            what="body Z", agent_may_refuse=True)
    assert ok == []
    assert rejection_problems(500, "application/json", agent_error, must_reject=False,
                              what="body Z") != []
    internal = json.dumps({"error": {"code": "internal_error", "message": "boom"}})
    assert rejection_problems(500, "application/json", internal, must_reject=False,
                              what="body Z", agent_may_refuse=True) != []
    with_traceback = json.dumps({"error": {"code": "agent_error", "message":
                                           "Traceback (most recent call last): ..."}})
    assert rejection_problems(500, "application/json", with_traceback, must_reject=False,
                              what="body Z", agent_may_refuse=True) != []
