"""``/openapi.json``: the agent routes described with MLflow's own Responses schemas, so
client generators and schema-driven fuzzers (schemathesis) see the real request and
response shapes, and every error status the real error envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI

logger = logging.getLogger("mlflow_app_agent.server")

_REF = "#/components/schemas/{model}"

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "examples": ["invalid_request"]},
                "message": {"type": "string"},
                "request_id": {"type": ["string", "null"]},
            },
        }
    },
}

_ERRORS = {
    "400": "Malformed JSON, or JSON nested too deeply",
    "401": "No forwarded identity (require_auth on)",
    "413": "Body larger than max_body_bytes",
    "415": "Content-Type is not application/json",
    "422": "Body does not match ResponsesAgentRequest (the message names the field)",
    "500": "The agent raised, or returned something that is not a response",
    "503": "The agent is loading, failed to load, or the server is shutting down",
    "504": "The agent did not answer within request_timeout",
}

_STREAM_FLAG = {
    "type": "object",
    "properties": {
        "stream": {
            "type": "boolean",
            "description": "Answer as Server-Sent Events (also: Accept: text/event-stream)",
        }
    },
}


def agent_schemas() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(request schema, response schema, components) from MLflow's pydantic models."""
    from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse

    components: dict[str, Any] = {"Error": _ERROR_SCHEMA}
    for model in (ResponsesAgentRequest, ResponsesAgentResponse):
        schema = model.model_json_schema(ref_template=_REF)
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    request = {"allOf": [{"$ref": _REF.format(model="ResponsesAgentRequest")}, _STREAM_FLAG]}
    response = {"$ref": _REF.format(model="ResponsesAgentResponse")}
    return request, response, components


def _agent_route(request: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}
    responses: dict[str, Any] = {
        "200": {
            "description": "A ResponsesAgentResponse, or with stream=true an SSE stream of "
                           "Responses events ending with `data: [DONE]`",
            "content": {
                "application/json": {"schema": response},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    }
    responses.update({code: {"description": why, "content": error}
                      for code, why in _ERRORS.items()})
    return {
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": request}}},
        "responses": responses,
    }


def _feedback_route() -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}}
    ident = {"type": "string", "pattern": "^[A-Za-z0-9._:@/+=-]{1,128}$"}
    body = {
        "type": "object", "additionalProperties": False, "required": ["value"],
        "properties": {"request_id": ident, "trace_id": ident, "value": {"type": "boolean"},
                       "comment": {"type": "string", "maxLength": 5000}},
        "oneOf": [{"required": ["request_id"]}, {"required": ["trace_id"]}],
    }
    errors = {"401": "No forwarded identity (require_auth on)",
              "404": "No traced answer with that id on this server",
              "415": "Content-Type is not application/json",
              "422": "Not a feedback body (the message names the field)"}
    return {
        "summary": "Thumbs up/down + comment on an answer, logged on its MLflow trace",
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {"200": {"description": "The assessment, created or updated",
                              "content": {"application/json": {"schema": {"type": "object"}}}},
                      **{code: {"description": why, "content": error}
                         for code, why in errors.items()}},
    }


def build_openapi(title: str, version: str) -> dict[str, Any]:
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=title, version=version, routes=[])
    try:
        request, response, components = agent_schemas()
    except Exception:  # an MLflow without these types: still describe the routes
        logger.warning("MLflow's Responses schemas are unavailable; /openapi.json is generic",
                       exc_info=True)
        request, response, components = {"type": "object", "required": ["input"]}, {}, {}
    schema.setdefault("components", {})["schemas"] = components
    paths = schema.setdefault("paths", {})
    for path in ("/invocations", "/responses"):
        paths[path] = {"post": _agent_route(request, response)}
    paths["/feedback"] = {"post": _feedback_route()}
    ok = {"get": {"responses": {"200": {"description": "OK"}}}}
    for path in ("/health", "/ping", "/ready", "/agent/info"):
        paths[path] = dict(ok)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Replace FastAPI's route-derived document (our agent routes are plain Starlette)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app.title, app.version)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
