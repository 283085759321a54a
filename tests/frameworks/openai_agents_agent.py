"""An OpenAI Agents SDK agent served as this toolkit's :class:`Agent` with async invoke and
stream functions, the shape Databricks' Agents SDK templates use: the models-from-code file
docs/authoring.md gives ("OpenAI Agents SDK"). The SDK agent has one tool; its model is
chat completions on whatever OpenAI-compatible endpoint ``OPENAI_BASE_URL`` /
``OPENAI_API_KEY`` name (the tests point them at ``scripted_llm``).
"""

import os
from collections.abc import AsyncIterator
from typing import Any

import mlflow
from agents import Agent as SdkAgent
from agents import OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from mlflow_app_agent import Agent

# The SDK's own tracing uploads to api.openai.com; the toolkit traces to MLflow instead.
set_tracing_disabled(True)


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


weather = SdkAgent(
    name="weather",
    instructions="Answer weather questions with the get_weather tool.",
    tools=[get_weather],
    model=OpenAIChatCompletionsModel(
        model=os.environ.get("LLM_MODEL", "scripted-llm"), openai_client=AsyncOpenAI()
    ),
)
agent = Agent("weather-agents-sdk", description="An OpenAI Agents SDK agent with one tool")


def _input(request: Any) -> list[dict[str, Any]]:
    """The conversation as the SDK takes it: Responses-API input items."""
    items = []
    for item in request.input:
        data = item.model_dump(exclude_none=True)
        if data.get("role") == "assistant" and isinstance(data.get("content"), list):
            # MLflow parses an earlier assistant turn as a plain message (its id dropped);
            # the SDK accepts output_text parts only in a full output message: give the text
            text = "".join(part.get("text", "") for part in data["content"])
            data = {"role": "assistant", "content": text}
        items.append(data)
    return items


def _output(run_item: Any) -> dict[str, Any]:
    """A run item as an output item (without the SDK's replay bookkeeping)."""
    return {k: v for k, v in run_item.to_input_item().items() if k != "provider_data"}


@agent.invoke_method
async def invoke(request: Any) -> dict[str, Any]:
    result = await Runner.run(weather, _input(request))
    return {"output": [_output(item) for item in result.new_items]}


@agent.stream_method
async def stream(request: Any) -> AsyncIterator[dict[str, Any]]:
    result = Runner.run_streamed(weather, _input(request))
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            yield {"type": "response.output_text.delta", "item_id": event.data.item_id,
                   "delta": event.data.delta}
        elif event.type == "run_item_stream_event" and event.name in (
                "message_output_created", "tool_called", "tool_output"):
            yield {"type": "response.output_item.done", "item": _output(event.item)}


mlflow.models.set_model(agent)
