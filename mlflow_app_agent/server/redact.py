"""Scrubbing secrets from what the server writes: error bodies, stream error events, log
lines (tracebacks included) and trace attributes.

Three kinds of secret are replaced by ``[REDACTED]``:

* the request's own credentials (``X-Forwarded-Access-Token``, ``Authorization``), given
  per call;
* the values of the secrets the app was given: env vars whose names say they hold one
  (``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*API_KEY*``, ...) and the env vars
  ``app.yaml`` fills from resources (``valueFrom``), read once when the app is created;
* well-known credential shapes, from ``detect-secrets``' maintained plugin patterns (AWS,
  GitHub, GitLab, OpenAI, Slack, Stripe, JWTs, private keys, ...) plus Databricks tokens
  and ``Bearer`` values, which it does not cover.

Also makes text encodable: lone surrogates (``"\\ud800"`` from JSON escapes) become U+FFFD.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger("mlflow_app_agent.server")

MARK = "[REDACTED]"
_MIN_SECRET = 6  # shorter values are not scrubbed (they would mangle ordinary text)

#: env var names that hold a secret by convention
SECRET_NAME = re.compile(
    r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL|AUTH)",
    re.IGNORECASE,
)

# Shapes detect-secrets has no plugin for.
_EXTRA_SHAPES = (
    # Databricks personal access tokens (dapi + 32 hex, optionally -N) and look-alikes
    r"\bdapi[0-9A-Za-z]{8,}(?:-\d+)?\b",
    # a whole JWT (detect-secrets' pattern may stop before the signature)
    r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
    # Databricks OAuth secrets
    r"\bdose[0-9a-f]{32}\b",
    # an Authorization header value
    r"\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{8,}",
)
# detect-secrets plugins that find things that are not credentials, or need context
_SKIP_PLUGINS = {"IPPublicDetector"}


@functools.lru_cache(maxsize=1)
def credential_shapes() -> tuple[re.Pattern[str], ...]:
    """Every known credential pattern (each plugin's own, as it compiled them)."""
    patterns: list[re.Pattern[str]] = list(_extra_shapes())
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
        from detect_secrets.plugins.base import RegexBasedDetector

        plugin: Any
        for plugin in get_mapping_from_secret_type_to_class().values():
            if not issubclass(plugin, RegexBasedDetector) or plugin.__name__ in _SKIP_PLUGINS:
                continue
            patterns.extend(plugin.denylist)
    except ImportError:  # pragma: no cover - a dependency; keep the extra shapes
        logger.warning("detect-secrets is not installed; only Databricks and Bearer token "
                       "shapes are redacted")
    return tuple(patterns)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def encodable(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD (UTF-8 cannot encode them)."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text)


def encodable_tree(value: Any) -> Any:
    """:func:`encodable` applied to every string (keys included) of a JSON-like value."""
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, dict):
        return {encodable_tree(k): encodable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [encodable_tree(v) for v in value]
    return value


def app_secrets(env: Mapping[str, str] | None = None,
                app_dirs: Iterable[Path] = ()) -> tuple[str, ...]:
    """Values of the secrets the app was given (see the module docstring)."""
    env = os.environ if env is None else env
    names = {name for name in env if SECRET_NAME.search(name)}
    for app_dir in app_dirs:
        names |= _value_from_names(app_dir)
    values = {env[n] for n in names if n in env and len(env[n].strip()) >= _MIN_SECRET}
    values = {v for v in values if not v.strip().isdigit()}  # ids, ports: not secrets
    return tuple(sorted(values, key=len, reverse=True))  # longest first


def _value_from_names(app_dir: Path) -> set[str]:
    from mlflow_app_agent.model.app_dir import value_from_env_names

    return value_from_env_names(app_dir)


class Redactor:
    """Scrubs one app's secrets, plus per-call ones, plus credential shapes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in secrets if s and len(s) >= _MIN_SECRET)

    def __call__(self, text: str, extra: Iterable[str | None] = ()) -> str:
        return _shapes_scrubbed(self._known_scrubbed(text, extra))

    def _known_scrubbed(self, text: str, extra: Iterable[str | None]) -> str:
        text = encodable(text)
        for secret in (*[e for e in extra if e and len(e) >= 4], *self.secrets):
            if secret in text:
                text = text.replace(secret, MARK)
        return text

    def field(self, text: str, extra: Iterable[str | None] = ()) -> str:
        """A short value for a log line (a request id, a user name, a path), scrubbed as
        by calling the redactor, at a per-request price: the credential-shape scan (~50
        patterns) is skipped for ids of lowercase hex digits and dashes (UUIDs; no shape
        matches one, tests/server/test_redaction.py checks) and cached for other short values
        (the same few user names recur on every request)."""
        text = self._known_scrubbed(text, extra)
        if _HEX_ID.fullmatch(text):
            return text
        return _cached_shapes_scrubbed(text) if len(text) <= 256 else _shapes_scrubbed(text)

    def location(self, text: str) -> str:
        """A model location (a path or a URI) for a lifecycle line: the app's secrets, URL
        credentials (``user:token@``, the query string) and the Databricks, JWT and Bearer
        shapes removed, without detect-secrets' plugins, whose import (~70 ms, mostly
        ``requests``) would sit on the start path before ``/ready``. Free text (error
        messages, tracebacks) always gets the full set."""
        text = self._known_scrubbed(text, ())
        if "://" in text:
            text = _URL_QUERY.sub(MARK, _URL_USERINFO.sub(MARK + "@", text))
        for shape in _extra_shapes():
            text = shape.sub(MARK, text)
        return text

    def tree(self, value: Any, extra: Iterable[str | None] = ()) -> Any:
        """Every string of a JSON-like value scrubbed."""
        extra = tuple(extra)
        if isinstance(value, str):
            return self(value, extra)
        if isinstance(value, dict):
            return {k: self.tree(v, extra) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v, extra) for v in value]
        return value


@functools.lru_cache(maxsize=1)
def _extra_shapes() -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in _EXTRA_SHAPES)


_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_URL_QUERY = re.compile(r"(?<=\?)[^#\s]+")


def _shapes_scrubbed(text: str) -> str:
    for shape in credential_shapes():
        text = shape.sub(MARK, text)
    return text


_cached_shapes_scrubbed = functools.lru_cache(maxsize=1024)(_shapes_scrubbed)
_HEX_ID = re.compile(r"[0-9a-f-]*")

NO_APP_SECRETS = Redactor()


def request_secrets(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The caller's credentials in a request's (lower-case) headers."""
    found = []
    token = headers.get("x-forwarded-access-token")
    if token:
        found.append(token)
    auth = headers.get("authorization")
    if auth:
        found.append(auth)
        scheme, _, credential = auth.partition(" ")
        if credential.strip():
            found.append(credential.strip())
    return tuple(found)
