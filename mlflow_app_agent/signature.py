"""The ResponsesAgent-compatible signature, and the log-time check of real agent output.

At log time the agent answers its input example through invoke and through stream; output
that MLflow's own ``ResponsesAgentResponse`` / ``ResponsesAgentStreamEvent`` reject fails
the log with a :class:`SignatureError` naming the field, before anything is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_app_agent.authoring import Agent, describe_validation_error, to_request
from mlflow_app_agent.errors import RequestError, SignatureError

if TYPE_CHECKING:
    from mlflow.models.signature import ModelSignature

TASK = "agent/v1/responses"
DEFAULT_INPUT_EXAMPLE: dict[str, Any] = {"input": [{"role": "user", "content": "Hello!"}]}
MAX_CHECKED_EVENTS = 10_000


def responses_signature() -> ModelSignature:
    """The fixed signature MLflow gives every ResponsesAgent."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.responses import (
        RESPONSES_AGENT_INPUT_SCHEMA,
        RESPONSES_AGENT_OUTPUT_SCHEMA,
    )

    return ModelSignature(inputs=RESPONSES_AGENT_INPUT_SCHEMA, outputs=RESPONSES_AGENT_OUTPUT_SCHEMA)


def normalize_input_example(example: Any) -> dict[str, Any]:
    """The input example as a plain dict, validated as a ResponsesAgentRequest."""
    if example is None:
        return dict(DEFAULT_INPUT_EXAMPLE)
    try:
        request = to_request(example)
    except RequestError as exc:
        raise SignatureError(f"input_example is not a valid Responses request: {exc}") from None
    return request.model_dump(exclude_none=True)


def check_response(output: Any, *, where: str = "invoke output") -> dict[str, Any]:
    """Validate an invoke output with MLflow's model; return it as a dict."""
    import pydantic
    from mlflow.types.responses import ResponsesAgentResponse

    if not isinstance(output, Mapping) and not hasattr(output, "model_dump"):
        raise SignatureError(
            f"{where} is a {type(output).__name__}, not a response: an agent must return a "
            "ResponsesAgentResponse or a dict like {'output': [<output items>]}"
        )
    try:
        validated = ResponsesAgentResponse.model_validate(
            output.model_dump() if hasattr(output, "model_dump") else dict(output)
        )
    except pydantic.ValidationError as exc:
        raise SignatureError(
            f"{where} is not a valid ResponsesAgentResponse: "
            f"{describe_validation_error(exc, prefix='response')}"
        ) from None
    return validated.model_dump(exclude_none=True)


def check_stream_event(event: Any, *, index: int) -> dict[str, Any]:
    """Validate one stream event with MLflow's ``ResponsesAgentStreamEvent``."""
    import pydantic
    from mlflow.types.responses import ResponsesAgentStreamEvent

    where = f"stream event #{index}"
    if not isinstance(event, Mapping) and not hasattr(event, "model_dump"):
        raise SignatureError(
            f"{where} is a {type(event).__name__}; stream events must be "
            "ResponsesAgentStreamEvent objects or dicts with a 'type'"
        )
    data = event.model_dump() if hasattr(event, "model_dump") else dict(event)
    try:
        ResponsesAgentStreamEvent.model_validate(data)
    except pydantic.ValidationError as exc:
        kind = data.get("type", "?")
        raise SignatureError(
            f"{where} (type {kind!r}) is not a valid ResponsesAgentStreamEvent: "
            f"{describe_validation_error(exc, prefix='event')}"
        ) from None
    return data


@dataclasses.dataclass(frozen=True)
class ContractCheck:
    """What the agent returned for the input example, already validated."""

    input_example: dict[str, Any]
    response: dict[str, Any]
    events: list[dict[str, Any]]


def check_agent_output(agent: Agent, input_example: Any = None) -> ContractCheck:
    """Run ``agent`` on the example through invoke and stream and validate both outputs.

    Exceptions raised by the agent itself are reported as :class:`SignatureError` with the
    interface that failed, since nothing can be logged from an agent that cannot answer.
    """
    example = normalize_input_example(input_example)
    try:
        raw = agent.invoke(example)
    except SignatureError:
        raise
    except Exception as exc:
        raise SignatureError(
            f"the agent raised {type(exc).__name__} on the input example through invoke: {exc}"
        ) from exc
    response = check_response(raw)
    events: list[dict[str, Any]] = []
    try:
        for index, event in enumerate(agent.stream(example)):
            if index >= MAX_CHECKED_EVENTS:
                raise SignatureError(
                    f"the stream did not end within {MAX_CHECKED_EVENTS} events on the input "
                    "example"
                )
            events.append(check_stream_event(event, index=index))
    except SignatureError:
        raise
    except Exception as exc:
        raise SignatureError(
            f"the agent raised {type(exc).__name__} on the input example through stream: {exc}"
        ) from exc
    if not any(e.get("type") == "response.output_item.done" for e in events):
        raise SignatureError(
            "the stream ended without a 'response.output_item.done' event: clients (and "
            "the derived invoke) need each output item as a done event"
        )
    return ContractCheck(input_example=example, response=response, events=events)
