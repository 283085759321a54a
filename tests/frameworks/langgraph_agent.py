"""A LangGraph agent wrapped as an MLflow ResponsesAgent the way MLflow's docs show: the
models-from-code file docs/authoring.md gives ("LangGraph"). The graph is the usual tool
loop, model -> tools -> model, with ``langchain-openai``'s ``ChatOpenAI`` as the model.

The LLM is whatever OpenAI-compatible endpoint ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``
name (the openai client's own variables); the tests point them at ``scripted_llm``.
"""

import os
from collections.abc import Generator
from typing import Any

import mlflow
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
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
            {"messages": messages},
            {"recursion_limit": 12},  # a model that keeps calling tools fails, not hangs
            stream_mode=["updates", "messages"],
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


model = ChatOpenAI(model=os.environ.get("LLM_MODEL", "scripted-llm"), temperature=0)
mlflow.models.set_model(LangGraphResponsesAgent(build_graph(model)))
