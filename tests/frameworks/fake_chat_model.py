"""A scripted langchain-core chat model that supports ``bind_tools`` (for in-process tests
of the LangGraph wrapper without any server): it asks for ``get_weather(city=<the user's
text>)`` and then answers from the tool's result, the same script as ``scripted_llm``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from .scripted_llm import _text, call_id_for


class ScriptedChatModel(GenericFakeChatModel):
    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        users = [m for m in messages if m.type == "human"]
        asked = _text(users[-1].content) if users else ""
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"Forecast: {_text(last.content)}.")
        return AIMessage(content="", tool_calls=[
            {"name": "get_weather", "args": {"city": asked}, "id": call_id_for(asked),
             "type": "tool_call"}
        ])

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages)
        if not reply.tool_calls:
            yield from super()._stream(messages, stop, run_manager, **kwargs)
            return
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(reply.tool_calls)
        ], chunk_position="last"))


class LoopingChatModel(ScriptedChatModel):
    """Asks for the tool again after every result: a loop only the recursion limit ends."""

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        n = sum(1 for m in messages if isinstance(m, ToolMessage))
        return AIMessage(content="", tool_calls=[
            {"name": "get_weather", "args": {"city": f"again {n}"}, "id": f"call_loop_{n}",
             "type": "tool_call"}
        ])
