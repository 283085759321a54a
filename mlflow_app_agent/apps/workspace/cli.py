"""``mlflow-app-agent deploy`` and ``mlflow-app-agent check-auth``."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from mlflow_app_agent.cli_common import (
    GRANT,
    Failure,
    app_option,
    command,
    model_argument,
    resource_option,
    say,
    timeout_option,
)
from mlflow_app_agent.errors import MlflowAppAgentError

_profile_opt = click.option(
    "--profile", default=None,
    help="Profile in ~/.databrickscfg; default: the SDK's standard auth (env vars, default "
         "profile, OAuth M2M).")


class _NoHostMetadataNoise(logging.Filter):
    # The SDK warns when a host has no /.well-known/databricks-config; that is harmless here.
    def filter(self, record: logging.LogRecord) -> bool:
        return "host metadata" not in record.getMessage()


_QUIET = _NoHostMetadataNoise()


def _client(profile: str | None, **config: Any) -> Any:
    from mlflow_app_agent.apps.workspace.sdk_calls import workspace_client

    logging.getLogger("databricks.sdk").addFilter(_QUIET)  # idempotent for one instance
    try:
        return workspace_client(profile, error=MlflowAppAgentError, **config)
    except MlflowAppAgentError as exc:
        raise Failure(exc.message) from None


@command("deploy")
@model_argument()
@app_option(required=True, help="Databricks App name (created if missing).")
@resource_option
@click.option("--grant", "grants", multiple=True, type=GRANT,
              help="Grant CAN_USE or CAN_MANAGE on the app, e.g. alice@example.com:CAN_USE, "
                   "group:data-team:CAN_USE. Repeatable; merged with existing grants.")
@click.option("--description", default=None, help="App description.")
@timeout_option(default=1200.0, bounds="the whole deploy may take: upload, compute start "
                                       "and deployment")
@_profile_opt
def deploy_command(model: str, app_name: str, resources: tuple[Any, ...],
                   grants: tuple[Any, ...], description: str | None, timeout: float,
                   profile: str | None) -> None:
    """Upload MODEL (a materialized app directory, or a model materialized on the fly) to
    the workspace and deploy it as the Databricks App --app; print its URL."""
    from mlflow_app_agent.apps.workspace.deployment import check_arguments, deploy

    check_arguments(app_name, grants)
    # The SDK retries an unreachable host for 5 minutes per call by default; --timeout (at
    # most 2 minutes per call) bounds that, so a typo in the host fails in time.
    client = _client(profile, retry_timeout_seconds=max(1, int(min(timeout, 120))))
    result = deploy(model, app_name=app_name, resources=list(resources), grants=list(grants),
                    client=client, description=description, timeout=timeout, progress=say)
    click.echo(result.url or f"deployed {result.app_name} (deployment {result.deployment_id})")


@command("check-auth")
@model_argument(required=False)
@resource_option
@timeout_option(default=5.0, bounds="each probe may take (probes run concurrently)")
@_profile_opt
def check_auth_command(model: str | None, resources: tuple[Any, ...],
                       timeout: float, profile: str | None) -> None:
    """Probe every resource MODEL declares (plus --resource) with the current credentials;
    print resource | check | OK/FAIL | reason; exit 1 on any failure."""
    from mlflow_app_agent.apps.workspace.auth_check import check_auth, format_table

    if model is None and not resources:
        raise click.UsageError("give MODEL or at least one --resource")
    client = _client(profile, http_timeout_seconds=timeout,
                     retry_timeout_seconds=max(1, int(timeout)))
    started = time.monotonic()
    rows = check_auth(model, client=client, resources=list(resources), timeout=timeout)
    click.echo(format_table(rows))
    failed = sum(not r.ok for r in rows)
    say(f"{len(rows) - failed} OK, {failed} FAIL in {time.monotonic() - started:.1f}s")
    if failed:
        sys.exit(1)
