"""Server settings (:class:`ServerSettings`): one frozen object per app, from keyword arguments
and the environment, declared once with ``pydantic-settings``.

Every setting has an ``MLFLOW_APP_AGENT_*`` variable so an ``app.yaml`` command can stay a
fixed list and still be tuned per deployment. These are the *server's* settings; the agent's
own model configuration (``AGENT_CONFIG_*``) is :mod:`mlflow_app_agent.agent_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

import pydantic
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlflow_app_agent.env_source import EnvSource, current_environ, reading
from mlflow_app_agent.errors import ConfigError

ENV_MODEL = "MLFLOW_APP_AGENT_MODEL"
#: ``module:function`` called with the built app (``serve --app-factory``)
ENV_APP_FACTORY = "MLFLOW_APP_AGENT_APP_FACTORY"
ENV_PREFIX = "MLFLOW_APP_AGENT_"

TraceExport = Literal["auto", "process", "thread"]
#: values of ``trace_export`` (see :mod:`mlflow_app_agent.server.trace_export`)
TRACE_EXPORT_MODES: tuple[str, ...] = get_args(TraceExport)
LogFormat = Literal["auto", "json", "text"]
#: values of ``log_format``: ``auto`` is JSON unless stderr is a terminal
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)
TraceDestination = Literal["experiment", "otlp", "both"]
#: values of ``trace_destination`` (see :mod:`mlflow_app_agent.server.telemetry`)
TRACE_DESTINATIONS: tuple[str, ...] = get_args(TraceDestination)
ErrorDetail = Literal["message", "none"]
#: values of ``error_detail`` (see :mod:`mlflow_app_agent.server.errors`)
ERROR_DETAILS: tuple[str, ...] = get_args(ErrorDetail)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
_KINDS = {int: "int (a whole number)", float: "float (a number, e.g. 30 or 2.5)"}

class ServerSettings(BaseSettings):
    """How one app instance behaves: defaults, then ``MLFLOW_APP_AGENT_<FIELD>`` variables,
    then keyword arguments (``ServerSettings(request_timeout=30)``). ``request_timeout`` is
    ``MLFLOW_APP_AGENT_REQUEST_TIMEOUT``. A bad value is a :class:`ConfigError` naming the
    variable (or field) and what is accepted."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, frozen=True, extra="forbid"
    )

    #: Worker threads that may run sync agent code at once (a CapacityLimiter, per app).
    max_concurrency: int = pydantic.Field(64, ge=1)
    #: Seconds an invoke (or a whole stream) may take before a 504 / timeout event; 0 = none.
    request_timeout: float = pydantic.Field(300.0, ge=0)
    #: Largest accepted request body in bytes (413 above it).
    max_body_bytes: int = pydantic.Field(4 * 1024 * 1024, ge=1)
    #: Reject agent calls without a forwarded identity (401).
    require_auth: bool = False
    #: Record an MLflow trace per request.
    tracing: bool = True
    #: Fraction of requests traced (1.0 = all), before the rate cap.
    trace_sample_ratio: float = pydantic.Field(1.0, ge=0.0, le=1.0)
    #: Upper bound on traces started per second (token bucket; 0 = no bound). Writing a trace
    #: costs ~20 ms of CPU with a sqlite store, so an unbounded burst would starve requests.
    trace_max_per_second: float = pydantic.Field(5.0, ge=0)
    #: Seconds the shutdown waits for queued traces to be written. Databricks Apps sends
    #: SIGKILL 15 s after SIGTERM: 10 s request grace + 2 s for cut requests + this. The trace
    #: writer process keeps writing what it was sent after the server exits.
    trace_flush_timeout: float = pydantic.Field(2.0, ge=0)
    #: Where traces are written: ``process`` (a child writer process, so trace I/O does not
    #: hold the server's GIL), ``thread`` (MLflow's in-process export threads) or ``auto``
    #: (``process`` for local sqlite/file stores, ``thread`` for tracking servers).
    trace_export: TraceExport = "auto"
    #: Request metrics: ``GET /metrics`` (Prometheus text) and, when
    #: ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, OTLP export. ``false`` turns both off.
    metrics: bool = True
    #: Server log lines (access log, lifecycle): ``json`` (one object a line), ``text``, or
    #: ``auto`` (JSON unless stderr is a terminal).
    log_format: LogFormat = "auto"
    #: Where MLflow traces go when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set: the MLflow
    #: ``experiment`` (default), the ``otlp`` collector (Apps telemetry), or ``both``.
    trace_destination: TraceDestination = "experiment"
    #: What a caller sees of an agent's failure: ``message`` (its scrubbed text) or ``none``
    #: (a generic message and the request id; the detail stays in the log and the trace).
    error_detail: ErrorDetail = "message"
    #: Seconds a request body may take to arrive (408 after); 0 = no limit.
    body_read_timeout: float = pydantic.Field(30.0, ge=0)
    #: Seconds per HTTP call to the tracking/registry server while loading the agent.
    registry_timeout: float = pydantic.Field(5.0, gt=0)
    #: Retries of a failed registry call (urllib3 backoff: 0, 2, 4 ... s). With the defaults
    #: an unreachable server fails the load in at most 4 x 5 s + 7 s = 27 s.
    registry_retries: int = pydantic.Field(3, ge=0)
    #: Serve the chat page at ``/`` and ``/chat`` to browsers (``serve --no-ui`` turns it off).
    ui: bool = True
    #: Comma-separated origins allowed to call the server cross-origin (CORS); empty = none,
    #: so a page on another site cannot make a signed-in user's browser drive the agent.
    cors_origins: str = ""

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(type(self).model_fields)
        if unknown:
            raise ConfigError(f"unknown server setting(s): {', '.join(sorted(unknown))}")
        try:
            super().__init__(**values)
        except pydantic.ValidationError as exc:
            raise ConfigError(_describe(exc, explicit=set(values))) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # keywords, then the environment; no .env or secrets files
        return init_settings, EnvSource(settings_cls)

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _env_text(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if info.field_name is not None and cls.model_fields[info.field_name].annotation is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:  # "" too: an unset flag in app.yaml means off
                return False
        return text

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServerSettings:
        """Defaults, then ``MLFLOW_APP_AGENT_*`` variables of ``env`` (default
        ``os.environ``), then the ``overrides`` that are not None (unset CLI options)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        with reading(env):
            return cls(**given)


def env_name(field: str) -> str:
    """The variable of a setting: ``request_timeout`` -> ``MLFLOW_APP_AGENT_REQUEST_TIMEOUT``."""
    return ENV_PREFIX + field.upper()


def _describe(exc: pydantic.ValidationError, *, explicit: set[str]) -> str:
    lowered = {k.upper(): v for k, v in current_environ().items()}
    problems: list[str] = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err.get("loc") else "?"
        rule = _rule(field, err)
        if field in explicit:
            subject = f"{field}={err.get('input')!r}"
        else:
            var = env_name(field)
            subject = f"{var}={lowered.get(var, err.get('input'))!r}"
        if rule.startswith("is not"):
            problems.append(f"{subject} {rule}")
        else:
            problems.append(rule if field in explicit else f"{subject}: {rule}")
    return "; ".join(problems)


def _rule(field: str, err: Any) -> str:
    """What ``field`` accepts, in the words of the error's kind."""
    info = ServerSettings.model_fields.get(field)
    annotation = info.annotation if info is not None else None
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        extra = {"request_timeout": " (0 disables it)", "trace_max_per_second": " (0 = unbounded)",
                 "body_read_timeout": " (0 disables it)"}
        op = ">=" if kind == "greater_than_equal" else ">"
        if field == "trace_sample_ratio":
            return "trace_sample_ratio must be between 0 and 1"
        return f"{field} must be {op} {_num(bound)}{extra.get(field, '')}"
    if kind in ("less_than_equal", "less_than"):
        return f"{field} must be between 0 and 1" if field == "trace_sample_ratio" else (
            f"{field} must be <= {_num(ctx.get('le', ctx.get('lt')))}")
    # every Literal field (trace_export, error_detail, log_format, ...) lists its own choices,
    # whatever the error's kind
    choices = get_args(annotation) if get_origin(annotation) is Literal else ()
    if kind == "literal_error" or choices:
        choices = choices or TRACE_EXPORT_MODES
        return f"{field} must be one of {', '.join(choices)} (got {err.get('input')!r})"
    if annotation is bool:
        return (f"is not a valid bool (use one of {', '.join(_TRUE)} or "
                f"{', '.join(f for f in _FALSE if f)}, or leave it empty for off)")
    if annotation in _KINDS:
        return f"is not a valid {_KINDS[annotation]}"
    return f"{field}: {err.get('msg', 'invalid')}"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
