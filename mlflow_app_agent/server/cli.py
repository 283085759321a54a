"""``mlflow-app-agent serve MODEL`` (and ``python -m mlflow_app_agent.serve``)."""

from __future__ import annotations

import os
from typing import Any

import click

from mlflow_app_agent.cli_common import command, model_argument
from mlflow_app_agent.errors import ConfigError, MlflowAppAgentError, ModelLocationError
from mlflow_app_agent.model.location import Location
from mlflow_app_agent.server.settings import (
    ENV_APP_FACTORY,
    ENV_MODEL,
    ERROR_DETAILS,
    LOG_FORMATS,
    TRACE_DESTINATIONS,
    TRACE_EXPORT_MODES,
    env_name,
)

ENV_APP_PORT = "DATABRICKS_APP_PORT"
DEFAULT_PORT = 8000
# Databricks Apps sends SIGKILL 15 s after SIGTERM: finish requests and flush traces before.
GRACEFUL_SHUTDOWN_SECONDS = 10


def resolve_port(flag: int | None, env: dict[str, str] | None = None) -> int:
    """``DATABRICKS_APP_PORT`` (what the platform sets), else ``--port``, else 8000."""
    env = dict(os.environ) if env is None else env
    raw = env.get(ENV_APP_PORT)
    if raw:
        try:
            port = int(raw)
        except ValueError:
            raise click.BadParameter(f"{ENV_APP_PORT}={raw!r} is not a port number") from None
        if not 0 < port < 65536:
            raise click.BadParameter(f"{ENV_APP_PORT}={raw!r} is out of range")
        return port
    return flag if flag is not None else DEFAULT_PORT


def location_problem(location: str) -> str | None:
    """What is wrong with ``location``, or None. Checked before binding, so a typo is one
    line instead of a server that answers 503. URIs are only classified here (no MLflow
    import); the loader resolves them in the background."""
    try:
        parsed = Location.parse(location)
    except ModelLocationError as exc:
        return exc.message
    scheme = location.split(":", 1)[0].lower()
    if parsed.kind == "uri" and scheme not in _STORAGE_SCHEMES:
        return (f"{location!r}: unknown scheme {scheme + ':'!r} (a model URI such as "
                "models:/name/1, a model or app directory, or agent.py[:name])")
    return None


# artifact stores MLflow can download a model from (other schemes are typos: model:/x/1)
_STORAGE_SCHEMES = ("file", "dbfs", "s3", "s3a", "gs", "wasbs", "abfss", "hdfs", "http",
                    "https", "mlflow-artifacts", "uc", "models", "runs")


@command("serve")
@model_argument(required=False)
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help=f"Port (default: ${ENV_APP_PORT}, else {DEFAULT_PORT}; the env var wins).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="uvicorn worker processes (each loads the agent).")
@click.option("--require-auth", is_flag=True, default=None,
              help="401 for agent calls without X-Forwarded-Email/-User/-Preferred-Username.")
@click.option("--tracing/--no-tracing", default=None,
              help="Record an MLflow trace per request (default on; env MLFLOW_APP_AGENT_TRACING).")
@click.option("--trace-max-per-second", type=click.FloatRange(min=0), default=None,
              help="Cap on traces started per second; 0 = no cap (default 5).")
@click.option("--trace-sample-ratio", type=click.FloatRange(0, 1), default=None,
              help="Fraction of requests traced (default 1.0).")
@click.option("--trace-export", type=click.Choice(TRACE_EXPORT_MODES), default=None,
              help="Write traces from a child process or MLflow's export thread (default "
                   "auto: a process for sqlite/file stores).")
@click.option("--trace-destination", type=click.Choice(TRACE_DESTINATIONS), default=None,
              help="With OTEL_EXPORTER_OTLP_ENDPOINT set: traces to the MLflow experiment "
                   "(default), the OTLP collector, or both.")
@click.option("--metrics/--no-metrics", default=None,
              help="GET /metrics and OTLP metric export (default on; env "
                   "MLFLOW_APP_AGENT_METRICS).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default=None,
              help="Access and lifecycle log lines: json, text, or auto (default: JSON "
                   "unless stderr is a terminal).")
@click.option("--timeout", "request_timeout", type=click.FloatRange(min=0), default=None,
              metavar="SECONDS",
              help="Seconds one request may take (an invoke, or a whole stream) before a 504 "
                   "or a timeout event; 0 = none (default 300).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=None,
              help="Largest request body (default 4 MiB).")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="Threads running sync agent code at once (default 64).")
@click.option("--error-detail", type=click.Choice(ERROR_DETAILS), default=None,
              help="What callers see of an agent failure: its scrubbed message, or none (a "
                   "generic message and the request id; the detail stays in the log and "
                   "trace). Default: message.")
@click.option("--body-read-timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds a request body may take to arrive before a 408; 0 = none "
                   "(default 30).")
@click.option("--registry-timeout", type=click.FloatRange(min=1), default=None,
              help="Seconds per call to the tracking/registry server while loading the model "
                   "(default 5).")
@click.option("--registry-retries", type=click.IntRange(min=0), default=None,
              help="Retries of a failed registry call while loading (default 3: an "
                   "unreachable server fails the load within ~27 s).")
@click.option("--ui/--no-ui", default=None,
              help="Serve the chat page at / and /chat to browsers (default on).")
@click.option("--cors-origins", default=None, metavar="ORIGINS",
              help="Comma-separated origins allowed cross-origin (default: none).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="uvicorn's log level.")
@click.option("--app-factory", metavar="MODULE:FUNCTION", default=None,
              help="Call FUNCTION(app) from the model's code_paths with the built app and "
                   f"serve what it returns (full control; env {ENV_APP_FACTORY}).")
def serve_command(model: str | None, host: str, port: int | None, workers: int,
                  log_level: str, app_factory: str | None, **settings: Any) -> None:
    """Serve an agent over HTTP (/invocations, /responses, SSE). Without MODEL the
    location comes from $MLFLOW_APP_AGENT_MODEL."""
    import uvicorn

    from mlflow_app_agent.server.settings import ServerSettings

    location = model or os.environ.get(ENV_MODEL)
    if not location:
        raise click.UsageError(f"give MODEL or set {ENV_MODEL}")
    chosen = {k: v for k, v in settings.items() if v is not None}
    try:
        log_format = ServerSettings.from_env(**chosen).log_format  # fail fast, before binding
    except ConfigError as exc:
        raise click.UsageError(exc.message) from None
    problem = location_problem(location)
    if problem is not None:
        raise click.UsageError(problem)
    # Workers re-create the app from the environment, so settings travel as env vars.
    os.environ[ENV_MODEL] = location
    for key, value in chosen.items():
        os.environ[env_name(key)] = str(value).lower() if isinstance(
            value, bool) else str(value)
    bind_port = resolve_port(port)
    # uvicorn applies this in every worker: its lines, ours and the rest of the toolkit's
    # (loading progress, the shutdown trace summary) in one format on stderr at log_level
    from mlflow_app_agent.server.logs import uvicorn_log_config

    common: dict[str, Any] = {
        "host": host,
        "port": bind_port,
        "log_level": log_level,
        # our access log (one line per request, JSON or text) replaces uvicorn's
        "log_config": uvicorn_log_config(log_format, log_level),
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    app_factory = app_factory or os.environ.get(ENV_APP_FACTORY) or None
    if app_factory:
        os.environ[ENV_APP_FACTORY] = app_factory
    else:
        # the agent server has no WebSocket route (extensions add HTTP routes only), and
        # loading uvicorn's WebSocket protocol costs start-up time; an app factory may add one
        common["ws"] = "none"
    if workers == 1:
        from mlflow_app_agent.server.app import build_app

        try:
            app = build_app(location, app_factory)
        except MlflowAppAgentError as exc:  # e.g. a factory that returns no ASGI app
            raise click.ClickException(exc.message) from None
        uvicorn.run(app, **common)
    else:
        uvicorn.run("mlflow_app_agent.server.app:app_from_env", factory=True,
                    workers=workers, **common)
