"""Server settings: one frozen object per app, from keyword arguments and/or the environment.

Every setting has an ``MLFLOW_APP_AGENT_*`` variable so an ``app.yaml`` command can stay a
fixed list and still be tuned per deployment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from mlflow_app_agent.errors import ConfigError

ENV_MODEL = "MLFLOW_APP_AGENT_MODEL"
ENV_PREFIX = "MLFLOW_APP_AGENT_"

#: values of ``trace_export`` (see :mod:`mlflow_app_agent.server.trace_export`)
TRACE_EXPORT_MODES = ("auto", "process", "thread")
#: values of ``log_format``: ``auto`` is JSON unless stderr is a terminal
LOG_FORMATS = ("auto", "json", "text")
#: values of ``trace_destination`` (see :mod:`mlflow_app_agent.server.telemetry`)
TRACE_DESTINATIONS = ("experiment", "otlp", "both")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """How one app instance behaves. Field names match the env vars: ``request_timeout`` is
    ``MLFLOW_APP_AGENT_REQUEST_TIMEOUT``."""

    #: Worker threads that may run sync agent code at once (a CapacityLimiter, per app).
    max_concurrency: int = 64
    #: Seconds an invoke (or a whole stream) may take before a 504 / timeout event; 0 = none.
    request_timeout: float = 300.0
    #: Largest accepted request body in bytes (413 above it).
    max_body_bytes: int = 4 * 1024 * 1024
    #: Reject agent calls without a forwarded identity (401).
    require_auth: bool = False
    #: Record an MLflow trace per request.
    tracing: bool = True
    #: Fraction of requests traced (1.0 = all), before the rate cap.
    trace_sample_ratio: float = 1.0
    #: Upper bound on traces started per second (token bucket; 0 = no bound). Writing a trace
    #: costs ~20 ms of CPU with a sqlite store, so an unbounded burst would starve requests.
    trace_max_per_second: float = 5.0
    #: Seconds the shutdown waits for queued traces to be written. Databricks Apps sends
    #: SIGKILL 15 s after SIGTERM: 10 s request grace + 2 s for cut requests + this. The trace
    #: writer process keeps writing what it was sent after the server exits.
    trace_flush_timeout: float = 2.0
    #: Where traces are written: ``process`` (a child writer process, so trace I/O does not
    #: hold the server's GIL), ``thread`` (MLflow's in-process export threads) or ``auto``
    #: (``process`` for local sqlite/file stores, ``thread`` for tracking servers).
    trace_export: str = "auto"
    #: Request metrics: ``GET /metrics`` (Prometheus text) and, when
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, OTLP export. ``false`` turns both off.
    metrics: bool = True
    #: Server log lines (access log, lifecycle): ``json`` (one object a line), ``text``, or
    #: ``auto`` (JSON unless stderr is a terminal).
    log_format: str = "auto"
    #: Where MLflow traces go when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: the MLflow
    #: ``experiment`` (default), the ``otlp`` collector (Apps telemetry), or ``both``.
    trace_destination: str = "experiment"

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ConfigError("max_concurrency must be >= 1")
        if self.request_timeout < 0:
            raise ConfigError("request_timeout must be >= 0 (0 disables it)")
        if self.max_body_bytes < 1:
            raise ConfigError("max_body_bytes must be >= 1")
        if not 0.0 <= self.trace_sample_ratio <= 1.0:
            raise ConfigError("trace_sample_ratio must be between 0 and 1")
        if self.trace_max_per_second < 0:
            raise ConfigError("trace_max_per_second must be >= 0 (0 = unbounded)")
        if self.trace_export not in TRACE_EXPORT_MODES:
            raise ConfigError(f"trace_export must be one of {', '.join(TRACE_EXPORT_MODES)} "
                              f"(got {self.trace_export!r})")
        if self.log_format not in LOG_FORMATS:
            raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)} "
                              f"(got {self.log_format!r})")
        if self.trace_destination not in TRACE_DESTINATIONS:
            raise ConfigError(f"trace_destination must be one of "
                              f"{', '.join(TRACE_DESTINATIONS)} (got {self.trace_destination!r})")

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServerSettings:
        """Defaults, then ``MLFLOW_APP_AGENT_*`` variables, then explicit ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is not None:
                values[field.name] = _parse(field.name, field.type, raw)
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown server setting(s): {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse(name: str, type_name: Any, raw: str) -> Any:
    var = ENV_PREFIX + name.upper()
    text = raw.strip()
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "")
    try:
        if kind == "bool":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a valid {kind}") from None
    return text
