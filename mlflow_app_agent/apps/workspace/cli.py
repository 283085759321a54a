"""``mlflow-app-agent deploy`` and ``mlflow-app-agent check-auth``."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from mlflow_app_agent.errors import MlflowAppAgentError

_resource_opt = click.option(
    "--resource", "resources", multiple=True, metavar="KIND:KEY=VALUE,...",
    help="Add or replace (by name) a declared resource, e.g. "
         "serving_endpoint:endpoint_name=my-llm,name=llm. Repeatable.")
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
        raise click.ClickException(exc.message) from None


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.command("deploy")
@click.argument("model_uri_or_dir")
@click.option("--app", "app_name", required=True, help="Databricks App name (created if missing).")
@_resource_opt
@click.option("--grant", "grants", multiple=True, metavar="PRINCIPAL:LEVEL",
              help="Grant CAN_USE or CAN_MANAGE on the app, e.g. alice@example.com:CAN_USE, "
                   "group:data-team:CAN_USE. Repeatable; merged with existing grants.")
@click.option("--description", default=None, help="App description.")
@click.option("--timeout", default=1200.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds to wait for the whole deploy, compute start and deployment included.")
@_profile_opt
def deploy_command(model_uri_or_dir: str, app_name: str, resources: tuple[str, ...],
                   grants: tuple[str, ...], description: str | None, timeout: float,
                   profile: str | None) -> None:
    """Upload MODEL_URI_OR_DIR (a materialized app directory, or a model URI materialized on
    the fly) to the workspace and deploy it as the Databricks App --app; print its URL."""
    from mlflow_app_agent.apps.workspace.deployment import check_arguments, deploy

    try:
        check_arguments(app_name, grants)
    except MlflowAppAgentError as exc:
        raise click.ClickException(exc.message) from None
    # The SDK retries an unreachable host for 5 minutes per call by default; --timeout (at
    # most 2 minutes per call) bounds that, so a typo in the host fails in time.
    client = _client(profile, retry_timeout_seconds=max(1, int(min(timeout, 120))))
    try:
        result = deploy(model_uri_or_dir, app_name=app_name, resources=list(resources),
                        grants=list(grants), client=client, description=description,
                        timeout=timeout, progress=_say)
    except MlflowAppAgentError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(result.url or f"deployed {result.app_name} (deployment {result.deployment_id})")


@click.command("check-auth")
@click.argument("model_uri_or_dir", required=False)
@_resource_opt
@click.option("--timeout", default=5.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds each probe may take; probes run concurrently.")
@_profile_opt
def check_auth_command(model_uri_or_dir: str | None, resources: tuple[str, ...],
                       timeout: float, profile: str | None) -> None:
    """Probe every resource MODEL_URI_OR_DIR declares (plus --resource) with the current
    credentials; print resource | check | OK/FAIL | reason; exit 1 on any failure."""
    from mlflow_app_agent.apps.workspace.auth_check import check_auth, format_table

    if model_uri_or_dir is None and not resources:
        raise click.UsageError("give MODEL_URI_OR_DIR or at least one --resource")
    client = _client(profile, http_timeout_seconds=timeout,
                     retry_timeout_seconds=max(1, int(timeout)))
    started = time.monotonic()
    try:
        rows = check_auth(model_uri_or_dir, client=client, resources=list(resources),
                          timeout=timeout)
    except MlflowAppAgentError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(format_table(rows))
    failed = sum(not r.ok for r in rows)
    _say(f"{len(rows) - failed} OK, {failed} FAIL in {time.monotonic() - started:.1f}s")
    if failed:
        sys.exit(1)
