"""A LangGraph agent wrapped as an MLflow ResponsesAgent the way MLflow's docs show (the
wrapper is the one docs/authoring.md gives), with a scripted chat model in place of an LLM.

The graph is the usual tool loop: model -> tools -> model. The scripted model asks for
``get_weather(city=<the user's text>)`` and then answers from the tool's result.
"""

import hashlib
import json
from collections.abc import Generator, Iterator
from typing import Any

import mlflow
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
    output_to_responses_items_stream,
    to_chat_completions_input,
)
from pydantic import Field


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


class ScriptedChatModel(GenericFakeChatModel):
    """A fake chat model that supports ``bind_tools`` and answers from the conversation."""

    messages: Iterator[AIMessage | str] = Field(default_factory=lambda: iter(()))

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedChatModel":
        return self

    def _reply(self, messages: list[BaseMessage]) -> AIMessage:
        last = messages[-1]
        users = [m for m in messages if m.type == "human"]
        asked = _text(users[-1].content) if users else ""
        if isinstance(last, ToolMessage):
            return AIMessage(content=f"Forecast: {_text(last.content)}.")
        call_id = "call_" + hashlib.sha256(asked.encode()).hexdigest()[:12]
        return AIMessage(content="", tool_calls=[
            {"name": "get_weather", "args": {"city": asked}, "id": call_id, "type": "tool_call"}
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


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def build_graph(model: Any) -> Any:
    llm = model.bind_tools([get_weather])

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode([get_weather]))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile()


# --- the wrapper a user copies (docs/authoring.md) --------------------------------------------
class LangGraphResponsesAgent(ResponsesAgent):
    def __init__(self, graph: Any) -> None:
        self.graph = graph

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        outputs = [
            event.item
            for event in self.predict_stream(request)
            if event.type == "response.output_item.done"
        ]
        return ResponsesAgentResponse(output=outputs)

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        messages = to_chat_completions_input([i.model_dump() for i in request.input])
        for mode, data in self.graph.stream(
            {"messages": messages}, stream_mode=["updates", "messages"]
        ):
            if mode == "updates":  # a node finished: its messages become output items
                for update in data.values():
                    if update and update.get("messages"):
                        yield from output_to_responses_items_stream(update["messages"])
            elif mode == "messages":  # a token of the model's answer: a text delta
                chunk = data[0]
                if isinstance(chunk, AIMessageChunk) and isinstance(chunk.content, str) \
                        and chunk.content:
                    yield ResponsesAgentStreamEvent(
                        **self.create_text_delta(delta=chunk.content, item_id=chunk.id)
                    )


mlflow.models.set_model(LangGraphResponsesAgent(build_graph(ScriptedChatModel())))
