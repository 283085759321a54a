"""Agents the chat page tests serve (``tests/server/ui/agents.py:chat``). Deterministic, no
LLM: the last user message picks what the agent does. Every request's ``input`` is
appended to ``$CHAT_LOG`` (one JSON line each) so tests see what the page sent."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from mlflow_app_agent import Agent

chat = Agent("support-bot", description="Answers questions about your orders and invoices.")

XSS = ("Here you go: <img src=x onerror=alert(1)> and <script>alert(2)</script> "
       "and [a link](javascript:alert(3)) and <a href=\"javascript:alert(4)\">another</a>.")

ANSWER = ("Sure! Your **last three orders** shipped on time.\n\n"
          "| order | status |\n| --- | --- |\n| A-1001 | delivered |\n| A-1002 | in transit |\n\n"
          "To track one from a script:\n\n```python\nclient.orders.track(\"A-1002\")\n```\n\n"
          "Anything else I can help with?")


def _text(request: Any) -> str:
    last = request.input[-1]
    content = getattr(last, "content", "")
    if isinstance(content, list):
        return "".join(str(getattr(c, "text", "") or "") for c in content)
    return str(content)


def _record(request: Any) -> None:
    path = os.environ.get("CHAT_LOG")
    if path:
        items = [item.model_dump(exclude_none=True) if hasattr(item, "model_dump") else item
                 for item in request.input]
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(items) + "\n")


def _message(text: str, item_id: str) -> dict[str, Any]:
    return {"type": "message", "id": item_id, "role": "assistant",
            "content": [{"type": "output_text", "text": text}]}


def _words(text: str, item_id: str, delay: float) -> Any:
    for i, word in enumerate(text.split(" ")):
        yield {"type": "response.output_text.delta", "item_id": item_id,
               "delta": word if i == 0 else " " + word}
        time.sleep(delay)
    yield {"type": "response.output_item.done", "item": _message(text, item_id)}


@chat.stream_method
def _stream(request: Any):
    _record(request)
    text = _text(request)
    delay = float(os.environ.get("CHAT_DELAY", "0.03"))
    if text == "fail":
        raise RuntimeError("the orders database is unreachable")
    if text == "xss":
        yield from _words(XSS, "msg_x", 0.0)
        return
    if text == "endless":
        marker = Path(os.environ.get("ENDLESS_MARKER", "endless.closed"))
        try:
            i = 0
            while True:
                yield {"type": "response.output_text.delta", "item_id": "msg_e", "delta": f"{i} "}
                i += 1
                time.sleep(0.05)
        finally:
            marker.write_text("closed")
    if text.startswith("weather"):
        args = json.dumps({"city": "Amsterdam", "unit": "celsius"})
        yield {"type": "response.output_item.done", "item": {
            "type": "function_call", "id": "fc_1", "call_id": "call_1",
            "name": "get_weather", "arguments": args}}
        yield {"type": "response.output_item.done", "item": {
            "type": "function_call_output", "call_id": "call_1",
            "output": json.dumps({"temperature": 14, "sky": "cloudy"})}}
        yield from _words("It is 14 °C and cloudy in Amsterdam.", "msg_w", delay)
        return
    turns = sum(1 for item in request.input if getattr(item, "role", None) == "user")
    reply = ANSWER if turns == 1 else f"This is turn {turns}; you said: {text}"
    yield from _words(reply, f"msg_{turns}", delay)
