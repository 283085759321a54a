"""Environment overrides of the agent's model configuration (``AGENT_CONFIG_JSON`` and
``AGENT_CONFIG__KEY__SUBKEY``) as a pydantic-settings class, :class:`AgentConfigOverrides`,
read each time the configuration is; see :mod:`mlflow_app_agent.agent_config`."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pydantic
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlflow_app_agent.env_source import EnvSource, reading
from mlflow_app_agent.errors import ConfigError

ENV_PREFIX = "AGENT_CONFIG__"
ENV_JSON = "AGENT_CONFIG_JSON"
_ENV_SEP = "__"


class AgentConfigOverrides(BaseSettings):
    """A deployment's overrides of the agent's model configuration, read from the
    environment (not the server's settings: those are ``ServerSettings``).

    ``AGENT_CONFIG_JSON``: a JSON object deep-merged over the logged base;
    ``AGENT_CONFIG__KEY[__SUBKEY...]``: one value per (nested) key, JSON when it parses.
    """

    model_config = SettingsConfigDict(case_sensitive=True, frozen=True, extra="forbid")

    #: ``AGENT_CONFIG_JSON``, decoded (None when unset or blank)
    overlay: pydantic.Json[dict[str, Any]] | None = None
    #: ``AGENT_CONFIG__*`` variables as set: name -> raw value
    keyed: dict[str, str] = pydantic.Field(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except pydantic.ValidationError as exc:
            err = exc.errors()[0]
            if err.get("type") == "json_invalid":
                detail = str(err.get("msg", "")).removeprefix("Invalid JSON: ")
                raise ConfigError(f"env {ENV_JSON} is not valid JSON ({detail})") from None
            if err.get("loc", ("",))[0] == "overlay":
                raise ConfigError(f"env {ENV_JSON} must hold a JSON object") from None
            raise ConfigError(f"{ENV_PREFIX}*: {err.get('msg', 'invalid')}") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _OverrideVariables(settings_cls)

    @pydantic.field_validator("overlay", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentConfigOverrides:
        """The overrides in ``environ`` (default ``os.environ``)."""
        with reading(environ):
            return cls()

    def apply(
        self, base: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
        """``base`` with ``AGENT_CONFIG_JSON`` and then ``AGENT_CONFIG__*`` applied.

        Returns the merged configuration and, for messages, which env var set which key
        path (lower-cased). Env key segments match existing keys case-insensitively; new
        keys are lower-cased.
        """
        config: dict[str, Any] = copy.deepcopy(dict(base))
        sources: dict[tuple[str, ...], str] = {}
        if self.overlay is not None:
            _deep_merge(config, self.overlay)
            for path in _leaf_paths(self.overlay, ()):
                sources[tuple(p.lower() for p in path)] = ENV_JSON
        # Sorted: shallower keys first, so AGENT_CONFIG__LLM__X refines AGENT_CONFIG__LLM.
        for name in sorted(self.keyed, key=lambda n: (n.count(_ENV_SEP), n)):
            segments = name[len(ENV_PREFIX):].split(_ENV_SEP)
            if not all(segments):
                raise ConfigError(
                    f"env {name}: empty key segment; use {ENV_PREFIX}KEY or "
                    f"{ENV_PREFIX}KEY__SUBKEY"
                )
            keys = _set_path(config, segments, _parse_env_value(self.keyed[name]), name)
            sources[tuple(k.lower() for k in keys)] = name
        return config, sources


class _OverrideVariables(EnvSource):
    """Collects the override variables (names kept as set: case matters for matching keys)."""

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        raw_json = self.env_vars.get(ENV_JSON)
        if raw_json is not None:
            values["overlay"] = raw_json
        keyed = {k: v for k, v in self.env_vars.items()
                 if k.startswith(ENV_PREFIX) and v is not None}
        if keyed:
            values["keyed"] = keyed
        return values


def resolve_overrides(
    base: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``base`` with the overrides in ``environ`` applied; see :meth:`AgentConfigOverrides.apply`."""
    return AgentConfigOverrides.from_env(environ).apply(base)


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _set_path(config: dict[str, Any], segments: list[str], value: Any, env: str) -> list[str]:
    node = config
    path: list[str] = []
    for i, segment in enumerate(segments):
        key = _match_key(node, segment)
        path.append(key)
        if i == len(segments) - 1:
            if isinstance(node.get(key), dict) and isinstance(value, dict):
                _deep_merge(node[key], value)
            else:
                node[key] = value
            break
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            raise ConfigError(
                f"env {env}: config key '{'.'.join(path)}' is a {type(child).__name__}, "
                "not a mapping, so it has no sub-keys to set"
            )
        node = child
    return path


def _match_key(node: Mapping[str, Any], segment: str) -> str:
    if segment in node:
        return segment
    for key in node:
        if key.lower() == segment.lower():
            return key
    return segment.lower()


def _deep_merge(into: dict[str, Any], overlay: Mapping[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _leaf_paths(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            yield from _leaf_paths(item, (*path, str(key)))
    else:
        yield path
