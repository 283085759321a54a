"""The exception hierarchy of mlflow-app-agent.

Every error the toolkit raises on purpose is a :class:`MlflowAppAgentError`. Errors that
can reach an HTTP client carry ``status_code`` and a stable machine-readable ``code``; the
server turns them into ``{"error": {"code", "message", "request_id"}}`` bodies. Messages
name what is wrong and never include secrets or tracebacks.
"""

from __future__ import annotations

from typing import Any


class MlflowAppAgentError(Exception):
    """Base class of every error raised by mlflow-app-agent."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status_code is not None:
            self.status_code = status_code

    def to_dict(self, request_id: str | None = None) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


# --- authoring and logging -------------------------------------------------------------


class AgentDefinitionError(MlflowAppAgentError, TypeError):
    """The agent object or file is not something we can serve (no invoke/stream, wrong type)."""

    code = "agent_definition_error"


class SignatureError(MlflowAppAgentError, ValueError):
    """The agent's real output does not match the ResponsesAgent contract."""

    code = "signature_error"


class MissingDependencyError(MlflowAppAgentError, ImportError):
    """The agent imports a module that is neither installed from requirements nor logged."""

    code = "missing_dependency"


class ProvenanceError(MlflowAppAgentError):
    """Git provenance could not be recorded as requested (e.g. ``git="require-clean"``)."""

    code = "provenance_error"


class ConfigError(MlflowAppAgentError, ValueError):
    """A model configuration value is missing or invalid."""

    code = "config_error"
    status_code = 400


class ExtensionError(MlflowAppAgentError):
    """A server extension of the agent failed: a start-up hook raised or timed out, or an
    app factory did not return an ASGI app."""

    code = "extension_error"
    status_code = 503


class ModelLoadError(MlflowAppAgentError):
    """A model URI or directory cannot be resolved or loaded."""

    code = "model_load_error"


class ModelLocationError(ModelLoadError, ValueError):
    """A model location is none of the accepted forms (see
    :class:`mlflow_app_agent.model.location.Location`); the message lists them."""

    code = "invalid_model_location"


class AgentFileError(AgentDefinitionError, ModelLoadError):
    """An agent's Python file cannot be run, or it defines no (or more than one) agent.

    Both an :class:`AgentDefinitionError` (at log time) and a :class:`ModelLoadError` (when
    serving or loading the file)."""

    code = "agent_file_error"


class UnknownArgumentError(MlflowAppAgentError, TypeError):
    """A function was called with a keyword argument it does not take (it would be lost)."""

    code = "unknown_argument"


class TemplateError(MlflowAppAgentError, ValueError):
    """``init`` was asked for an unknown template or an invalid project name."""

    code = "template_error"


# --- serving -----------------------------------------------------------------------------


class RequestError(MlflowAppAgentError, ValueError):
    """The client sent something we cannot accept (bad JSON, wrong schema)."""

    code = "invalid_request"
    status_code = 400


class PayloadTooLargeError(RequestError):
    code = "payload_too_large"
    status_code = 413


class UnsupportedMediaTypeError(RequestError):
    """A POST route got a body that is not declared as JSON (a browser form or ``text/plain``
    fetch from another site would otherwise reach the agent without a CORS preflight)."""

    code = "unsupported_media_type"
    status_code = 415


class NotFoundError(MlflowAppAgentError):
    code = "not_found"
    status_code = 404


class AuthenticationRequiredError(MlflowAppAgentError):
    code = "unauthenticated"
    status_code = 401


class PermissionDeniedError(MlflowAppAgentError):
    code = "permission_denied"
    status_code = 403


class AgentExecutionError(MlflowAppAgentError):
    """The agent raised while answering a request."""

    code = "agent_error"
    status_code = 500


class AgentTimeoutError(MlflowAppAgentError):
    code = "timeout"
    status_code = 504


# --- apps: materialize, verify, deploy ---------------------------------------------------


class MaterializeError(MlflowAppAgentError):
    code = "materialize_error"


class TargetExistsError(MaterializeError, FileExistsError):
    code = "target_exists"


class ManifestMismatchError(MlflowAppAgentError):
    """A materialized directory no longer matches its MANIFEST.json."""

    code = "manifest_mismatch"

    def __init__(self, message: str, *, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class RunLocalError(MlflowAppAgentError):
    """``run-local`` could not install or start the app (pip failed, not ready, port busy)."""

    code = "run_local_error"


class DeployError(MlflowAppAgentError):
    code = "deploy_error"


class CheckAuthError(MlflowAppAgentError):
    code = "check_auth_error"


# --- validation ----------------------------------------------------------------------------


class ValidationFailure(MlflowAppAgentError, AssertionError):
    """A property of the agent contract does not hold; the message holds a counterexample."""

    code = "validation_failed"


__all__ = [
    "AgentDefinitionError",
    "AgentFileError",
    "AgentExecutionError",
    "AgentTimeoutError",
    "AuthenticationRequiredError",
    "CheckAuthError",
    "ConfigError",
    "DeployError",
    "ExtensionError",
    "ManifestMismatchError",
    "MaterializeError",
    "MissingDependencyError",
    "MlflowAppAgentError",
    "ModelLoadError",
    "ModelLocationError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProvenanceError",
    "RequestError",
    "RunLocalError",
    "SignatureError",
    "TargetExistsError",
    "TemplateError",
    "UnknownArgumentError",
    "UnsupportedMediaTypeError",
    "ValidationFailure",
]
