"""The Responses shapes the agent methods exchange: coercing a request into MLflow's
``ResponsesAgentRequest`` (with readable errors), reducing a stream to an invoke response,
and the reverse. Plain dicts in and out; MLflow's pydantic types are imported lazily."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlflow_app_agent.errors import RequestError

if TYPE_CHECKING:
    from mlflow.types.responses import ResponsesAgentRequest

DONE_EVENT = "response.output_item.done"
TEXT_DELTA_EVENT = "response.output_text.delta"


def to_request(request: Any) -> ResponsesAgentRequest:
    """Coerce a dict (or a request object) into MLflow's ``ResponsesAgentRequest``.

    Raises :class:`RequestError` naming each bad field instead of pydantic's raw error.
    """
    import pydantic
    from mlflow.types.responses import ResponsesAgentRequest

    if isinstance(request, ResponsesAgentRequest):
        return request
    if hasattr(request, "model_dump"):
        request = request.model_dump(exclude_none=True)
    if not isinstance(request, Mapping):
        raise RequestError(
            f"request must be a JSON object with an 'input' list, got {type(request).__name__}"
        )
    try:
        return ResponsesAgentRequest.model_validate(dict(request))
    except pydantic.ValidationError as exc:
        raise RequestError(describe_validation_error(exc, prefix="request")) from None
    except (TypeError, KeyError, AttributeError) as exc:
        # MLflow's own validators index and compare fields before pydantic has checked their
        # types (e.g. a list where a content item's "type" string belongs): still bad input.
        where = _first_non_string_type(request.get("input"))
        detail = f"{where}: must be a string" if where else f"{type(exc).__name__}: {exc}"
        raise RequestError(f"request does not match ResponsesAgentRequest ({detail})") from None


def _first_non_string_type(items: Any) -> str | None:
    """Path of the first ``type`` field in ``input`` (items or their content parts) that is
    not a string, the shape MLflow's validators assume."""
    if not isinstance(items, list):
        return None
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            continue
        if "type" in item and not isinstance(item["type"], str):
            return f"request.input.{i}.type"
        content = item.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, Mapping) and "type" in part and not isinstance(part["type"], str):
                return f"request.input.{i}.content.{j}.type"
    return None


def describe_validation_error(exc: Any, *, prefix: str) -> str:
    """One readable clause per pydantic error: ``request.input.0.role: Field required``.

    Union branches (pydantic labels them ``function-after[check_role(), ...Message]``) are
    shown as ``(as Message)``, so a client sees which item shape each complaint is about.
    """
    parts: list[str] = []
    for err in exc.errors():
        path, branch = [prefix], ""
        for segment in err.get("loc", ()):
            text = str(segment)
            if "[" in text:  # a union/validator branch label, not a field
                branch = text.rstrip("]").rsplit(",", 1)[-1].rsplit("[", 1)[-1].strip()
                continue
            path.append(text)
        where = ".".join(path) + (f" (as {branch})" if branch else "")
        clause = f"{where}: {err.get('msg', 'invalid')}"
        if clause not in parts:
            parts.append(clause)
    shown = parts[:5]
    if len(parts) > 5:
        shown.append(f"... and {len(parts) - 5} more")
    return "; ".join(shown)


def dump(obj: Any) -> Any:
    """Pydantic objects to dicts (``exclude_none``); everything else unchanged."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=True)
    return obj


def reduce_stream(events: list[Any]) -> dict[str, Any]:
    """Invoke output from a finished stream: the done items in order, and custom_outputs."""
    output: list[Any] = []
    custom_outputs = None
    for event in events:
        if isinstance(event, Mapping):
            if event.get("type") == DONE_EVENT:
                output.append(event.get("item"))
            if event.get("custom_outputs") is not None:
                custom_outputs = event["custom_outputs"]
    response: dict[str, Any] = {"output": output}
    if custom_outputs is not None:
        response["custom_outputs"] = custom_outputs
    return response


def response_to_events(response: Any) -> list[dict[str, Any]]:
    """Stream events from an invoke output: one done event per item."""
    if not isinstance(response, Mapping):
        # Let the caller's validation report it; a stream cannot be made from it.
        return [response]
    items = response.get("output") or []
    events: list[dict[str, Any]] = [
        {"type": DONE_EVENT, "item": item, "output_index": i} for i, item in enumerate(items)
    ]
    if response.get("custom_outputs") is not None:
        if events:
            events[-1]["custom_outputs"] = response["custom_outputs"]
    return events
