"""``mlflow-app-agent serve MODEL_URI_OR_DIR`` (and ``python -m mlflow_app_agent.serve``)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from mlflow_app_agent.errors import ConfigError
from mlflow_app_agent.server.settings import (
    ENV_MODEL,
    ENV_PREFIX,
    LOG_FORMATS,
    TRACE_DESTINATIONS,
    TRACE_EXPORT_MODES,
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


_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def missing_local_path(location: str) -> str | None:
    """The local path ``location`` names when it does not exist; None for URIs (the loader
    resolves those in the background) and for paths that exist. Checked before binding, so
    a typo is one line instead of a server that answers 503."""
    path_part, sep, _ = location.partition(".py:")
    if sep:
        candidate = path_part + ".py"
    elif _URI_SCHEME.match(location):
        return None
    else:
        candidate = location
    return None if Path(candidate).exists() else candidate


@click.command("serve")
@click.argument("model", required=False, metavar="[MODEL_URI_OR_DIR]")
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
              help="Seconds per request before 504; 0 = none (default 300).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=None,
              help="Largest request body (default 4 MiB).")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None,
              help="Threads running sync agent code at once (default 64).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve_command(model: str | None, host: str, port: int | None, workers: int,
                  log_level: str, **settings: Any) -> None:
    """Serve an agent: a model URI (models:/name/1, models:/name@alias, runs:/...), a model
    or materialized app directory, or agent.py[:name]. Without MODEL_URI_OR_DIR the
    location comes from $MLFLOW_APP_AGENT_MODEL."""
    import uvicorn

    from mlflow_app_agent.server.settings import ServerSettings

    location = model or os.environ.get(ENV_MODEL)
    if not location:
        raise click.UsageError(f"give MODEL_URI_OR_DIR or set {ENV_MODEL}")
    chosen = {k: v for k, v in settings.items() if v is not None}
    try:
        log_format = ServerSettings.from_env(**chosen).log_format  # fail fast, before binding
    except ConfigError as exc:
        raise click.UsageError(exc.message) from None
    missing = missing_local_path(location)
    if missing is not None:
        raise click.UsageError(f"{missing!r} does not exist (a model URI such as "
                               "models:/name/1, a model or app directory, or agent.py[:name])")
    # Workers re-create the app from the environment, so settings travel as env vars.
    os.environ[ENV_MODEL] = location
    for key, value in chosen.items():
        os.environ[ENV_PREFIX + key.upper()] = str(value).lower() if isinstance(
            value, bool) else str(value)
    bind_port = resolve_port(port)
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
    if workers == 1:
        from mlflow_app_agent.server.app import create_app

        uvicorn.run(create_app(location), **common)
    else:
        uvicorn.run("mlflow_app_agent.server.app:app_from_env", factory=True,
                    workers=workers, **common)
