"""Environment overrides of the model configuration (``AGENT_CONFIG_JSON`` and
``AGENT_CONFIG__KEY__SUBKEY``), resolved at read time; see :mod:`mlflow_app_agent.agent_config`."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

from mlflow_app_agent.errors import ConfigError

ENV_PREFIX = "AGENT_CONFIG__"
ENV_JSON = "AGENT_CONFIG_JSON"
_ENV_SEP = "__"


def resolve_overrides(
    base: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """``base`` with ``AGENT_CONFIG_JSON`` and then ``AGENT_CONFIG__*`` applied.

    Returns the merged configuration and, for messages, which env var set which key path
    (lower-cased). Env key segments match existing keys case-insensitively; new keys are
    lower-cased.
    """
    config: dict[str, Any] = copy.deepcopy(dict(base))
    sources: dict[tuple[str, ...], str] = {}
    raw_json = environ.get(ENV_JSON)
    if raw_json and raw_json.strip():
        try:
            overlay = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"env {ENV_JSON} is not valid JSON (line {exc.lineno} column {exc.colno}: "
                f"{exc.msg})"
            ) from None
        if not isinstance(overlay, dict):
            raise ConfigError(f"env {ENV_JSON} must hold a JSON object")
        _deep_merge(config, overlay)
        for path in _leaf_paths(overlay, ()):
            sources[tuple(p.lower() for p in path)] = ENV_JSON
    # Sorted: shallower keys first, so AGENT_CONFIG__LLM__X refines AGENT_CONFIG__LLM.
    for name in sorted(environ, key=lambda n: (n.count(_ENV_SEP), n)):
        if not name.startswith(ENV_PREFIX):
            continue
        segments = name[len(ENV_PREFIX):].split(_ENV_SEP)
        if not all(segments):
            raise ConfigError(
                f"env {name}: empty key segment; use {ENV_PREFIX}KEY or {ENV_PREFIX}KEY__SUBKEY"
            )
        keys = _set_path(config, segments, _parse_env_value(environ[name]), name)
        sources[tuple(k.lower() for k in keys)] = name
    return config, sources


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
