"""Model configuration: logged with the agent, read by the agent at run time, overridable per
deployment through the environment.

Three layers, later ones win (see ``docs/configuration.md``):

1. the **base** configuration stored in the model at log time
   (``log_model(..., model_config=dict | "config.yaml")``, validated by
   :func:`load_model_config`), bound to the loaded agent (``Agent.bind_model_config``) and
   active inside its calls and while its code is imported (:func:`activate_config`);
2. ``AGENT_CONFIG_JSON``: a JSON object deep-merged over the base;
3. ``AGENT_CONFIG__<KEY>[__<SUBKEY>...]``: one value per (nested) key, parsed as JSON when it
   parses (``0.2``, ``true``, ``["a"]``) and used as a string otherwise.

Overrides are resolved each time :func:`get_config` is called, so changing an app's
``app.yaml`` env (and restarting it) changes behaviour without logging a new model version.
Secrets never belong in the configuration: keys that look like credentials are refused at log
time; tools read secrets from env vars that ``app.yaml`` fills from Databricks secrets.
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, overload

import pydantic

from mlflow_app_agent.agent_config_env import ENV_JSON, ENV_PREFIX, resolve_overrides
from mlflow_app_agent.errors import ConfigError

# Keys whose string values are credentials. Matched on the last path segment, whole words only,
# so ``max_tokens`` or ``secret_env`` (the *name* of an env var) are fine.
_SECRET_KEY_RE = re.compile(
    r"(^|_)(api_?key|password|passwd|secret|client_secret|access_token|token|pat)$", re.I
)

Model = TypeVar("Model", bound=pydantic.BaseModel)


# --- the common configuration model that templates use ------------------------------------


class _Strict(pydantic.BaseModel):
    # extra="forbid": a typo in a key is an error naming it, not a silently ignored setting.
    # coerce_numbers_to_str: AGENT_CONFIG__X=123 parses as JSON 123 but may be meant as a str.
    model_config = pydantic.ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class LLMConfig(_Strict):
    """Which chat model to call and how."""

    endpoint_name: str = pydantic.Field(
        default="databricks-claude-sonnet-4", description="Serving endpoint (the OpenAI 'model')."
    )
    base_url: str | None = pydantic.Field(
        default=None,
        description="OpenAI-compatible base URL; default {DATABRICKS_HOST}/serving-endpoints.",
    )
    temperature: float = pydantic.Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = pydantic.Field(default=None, gt=0)
    top_p: float | None = pydantic.Field(default=None, gt=0.0, le=1.0)
    timeout_seconds: float = pydantic.Field(default=60.0, gt=0)
    use_user_token: bool = pydantic.Field(
        default=False,
        description="Call the endpoint with the caller's forwarded token instead of the app's.",
    )
    api_key_env: str | None = pydantic.Field(
        default=None,
        description="Env var holding an API key for a non-Databricks endpoint (from a secret).",
    )


class ToolsConfig(_Strict):
    """Which tools the agent may use and their settings."""

    enabled: list[str] | None = pydantic.Field(
        default=None, description="Tool names the agent may call; None means all it defines."
    )
    max_iterations: int = pydantic.Field(default=5, ge=1, le=50)
    settings: dict[str, dict[str, Any]] = pydantic.Field(default_factory=dict)

    def is_enabled(self, name: str) -> bool:
        return self.enabled is None or name in self.enabled


class AgentConfig(_Strict):
    """Common agent settings. Subclass it to add your own fields (they are validated too)."""

    llm: LLMConfig = pydantic.Field(default_factory=LLMConfig)
    system_prompt: str = "You are a helpful assistant."
    prompt_templates: dict[str, str] = pydantic.Field(default_factory=dict)
    tools: ToolsConfig = pydantic.Field(default_factory=ToolsConfig)

    def render_prompt(self, name: str, /, **values: Any) -> str:
        """Fill ``prompt_templates[name]`` (``str.format`` syntax); ConfigError if missing."""
        try:
            template = self.prompt_templates[name]
        except KeyError:
            raise ConfigError(f"config key 'prompt_templates.{name}' is not set") from None
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"config key 'prompt_templates.{name}' cannot be filled: {exc!r}"
            ) from None


# --- log time --------------------------------------------------------------------------------


def load_model_config(
    source: Mapping[str, Any] | str | os.PathLike[str] | None,
    schema: type[pydantic.BaseModel] | None = None,
) -> dict[str, Any] | None:
    """Read and validate the configuration to store with a model (at log time).

    ``source`` is a mapping, or the path of a YAML or JSON file holding a mapping; ``None``
    means no configuration. The result is plain JSON data (a deep copy). Raises
    :class:`ConfigError` naming the file, key and problem when it is not a mapping, holds a
    value that is not JSON (sets, objects, NaN, non-string keys), holds something that looks
    like a secret, or does not satisfy ``schema`` (the agent's pydantic config model).
    Environment overrides are *not* applied: the stored configuration is the base.
    """
    if source is None:
        return None
    where = "model_config"
    if isinstance(source, Mapping):
        data: Any = source
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        where = str(path)
        data = _read_file(path)
    else:
        raise ConfigError(
            "model_config must be a dict or the path of a YAML/JSON file, got "
            f"{type(source).__name__}"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the configuration must be a mapping of keys to values")
    _check_json(data, (), where)
    _check_no_secrets(data, (), where)
    config: dict[str, Any] = json.loads(json.dumps(data))
    if schema is not None:
        validate_config(config, schema, where=where)
    return config


def _read_file(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"model config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"model config file {str(path)!r} cannot be read: {exc}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    try:
        # YAML is a superset of JSON, so any other suffix is read as YAML.
        loaded = yaml.safe_load(text)
        return {} if loaded is None else loaded  # an empty or comment-only file
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{at}: {problem}") from None


def _key_path(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path) or "<root>"


def _check_json(value: Any, path: tuple[Any, ...], where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"{where}: key {key!r} under '{_key_path(path)}' must be a string"
                )
            _check_json(item, (*path, key), where)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, (*path, index), where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: config key '{_key_path(path)}' is {value}, not valid JSON")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ConfigError(
            f"{where}: config key '{_key_path(path)}' holds a {type(value).__name__}, which is "
            "not JSON (use strings, numbers, booleans, lists and mappings)"
        )


def _check_no_secrets(value: Any, path: tuple[Any, ...], where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, str) and item and _SECRET_KEY_RE.search(key):
                raise ConfigError(
                    f"{where}: config key '{_key_path((*path, key))}' looks like a secret; "
                    "secrets must not be stored with the model. Put it in a Databricks secret, "
                    "expose it to the app through app.yaml 'valueFrom', and read the env var "
                    "(e.g. store 'api_key_env: MY_API_KEY' instead)"
                )
            _check_no_secrets(item, (*path, key), where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_no_secrets(item, (*path, index), where)


def validate_config(
    config: Mapping[str, Any],
    schema: type[Model],
    *,
    where: str = "model_config",
    sources: Mapping[tuple[str, ...], str] | None = None,
) -> Model:
    """Validate ``config`` against a pydantic model; ConfigError names each bad key (and the
    env var that set it, when ``sources`` maps key paths to env var names)."""
    if not (isinstance(schema, type) and issubclass(schema, pydantic.BaseModel)):
        raise ConfigError(f"config schema must be a pydantic BaseModel class, got {schema!r}")
    try:
        return schema.model_validate(dict(config))
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            loc = tuple(str(p) for p in err.get("loc", ()))
            origin = _origin(loc, sources or {})
            # err["msg"] only: pydantic's full text repeats the input, which may be sensitive.
            problems.append(f"config key '{_key_path(loc)}'{origin}: {err.get('msg', 'invalid')}")
        more = len(exc.errors()) - 5
        if more > 0:
            problems.append(f"... and {more} more")
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


def _origin(loc: tuple[str, ...], sources: Mapping[tuple[str, ...], str]) -> str:
    for n in range(len(loc), 0, -1):
        env = sources.get(tuple(p.lower() for p in loc[:n]))
        if env:
            return f" (set by env {env})"
    return ""


# --- run time --------------------------------------------------------------------------------

# Not process-wide: the base configuration in effect for the current thread or task. The
# loaded Agent owns its model's configuration (Agent.bind_model_config) and sets this around
# each of its calls, so a server's worker threads and a pyfunc's predict see it; the loader
# sets it while the agent's code is imported (load time).
_NOT_ACTIVE: Any = object()
#: Agent.bind_model_config was never called: calls see the caller's active configuration.
NOT_BOUND: Any = object()
_current: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "mlflow_app_agent_model_config", default=_NOT_ACTIVE
)


def freeze_config(base: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A private JSON copy of ``base``; ConfigError when it is not a mapping."""
    if base is not None and not isinstance(base, Mapping):
        raise ConfigError(f"model_config must be a mapping, got {type(base).__name__}")
    return None if base is None else json.loads(json.dumps(dict(base)))


class _Activation:
    """Returned by :func:`activate_config`: already active; as a context manager, restores the
    previous configuration on exit."""

    def __init__(self, token: contextvars.Token[Any] | None) -> None:
        self._token = token

    def __enter__(self) -> _Activation:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


def activate_config(base: Mapping[str, Any] | None) -> _Activation:
    """Make ``base`` (the configuration stored with the model, or None) the active one in the
    current context: this thread or task and what it starts with a copy of its context
    (anyio worker threads, asyncio tasks), never other threads.

    The loader uses it while the agent's code is imported; a loaded agent's calls use the
    configuration bound to the agent instead. Usable as a context manager
    (``with activate_config(cfg): ...``) to restore the previous configuration afterwards.
    """
    return _Activation(_current.set(freeze_config(base)))


def config_scope(bound: Any) -> _Activation:
    """``with config_scope(agent_config):`` for one call of an agent: ``NOT_BOUND`` leaves
    the caller's configuration in effect."""
    if bound is NOT_BOUND:
        return _Activation(None)
    return _Activation(_current.set(bound))


def deactivate_config() -> None:
    """Forget the active configuration in the current context (mostly for tests)."""
    _current.set(_NOT_ACTIVE)


def is_config_active() -> bool:
    return _current.get() is not _NOT_ACTIVE


@overload
def get_config(
    schema: None = None,
    *,
    development_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> dict[str, Any]: ...


@overload
def get_config(
    schema: type[Model],
    *,
    development_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> Model: ...


def get_config(
    schema: type[Model] | None = None,
    *,
    development_config: str | os.PathLike[str] | Mapping[str, Any] | None = None,
) -> dict[str, Any] | Model:
    """The agent's configuration right now: the active base with env overrides applied.

    With ``schema`` (a pydantic model such as :class:`AgentConfig` or a subclass), returns a
    validated instance, or raises :class:`ConfigError` naming the bad key and the env var
    that set it; without, a fresh dict. ``development_config`` (a dict or YAML/JSON path) is
    the base used when no model configuration is active, i.e. while developing before the
    model is logged, like MLflow's ``ModelConfig(development_config=...)``.
    """
    base = _current.get()
    if base is _NOT_ACTIVE or base is None:
        if development_config is not None:
            base = load_model_config(development_config) or {}
        else:
            base = {}
    config, sources = resolve_overrides(base, os.environ)
    if schema is None:
        return config
    return validate_config(config, schema, where="agent configuration", sources=sources)


def config_schema_of(agent: Any) -> type[pydantic.BaseModel] | None:
    """The pydantic config model an agent declares (``agent.config_schema``), if any."""
    schema = getattr(agent, "config_schema", None)
    if schema is None:
        return None
    if isinstance(schema, type) and issubclass(schema, pydantic.BaseModel):
        return schema
    raise ConfigError(
        f"agent.config_schema must be a pydantic BaseModel class, got {type(schema).__name__}"
    )


__all__ = [
    "ENV_JSON",
    "ENV_PREFIX",
    "AgentConfig",
    "LLMConfig",
    "ToolsConfig",
    "NOT_BOUND",
    "activate_config",
    "config_schema_of",
    "config_scope",
    "deactivate_config",
    "freeze_config",
    "get_config",
    "is_config_active",
    "load_model_config",
    "resolve_overrides",
    "validate_config",
]
