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
@click.option("--user-api-scope", "user_api_scopes", multiple=True, metavar="SCOPE",
              help="Add a user-authorization scope to the app (e.g. sql, dashboards.genie); "
                   "added to those the model declares. Repeatable.")
@click.option("--compute-size", default=None, metavar="SIZE",
              help="App compute size: MEDIUM (the platform default), LARGE, or another size "
                   "the installed databricks-sdk knows. Default: the declared one.")
@click.option("--instances", default=None, metavar="N|MIN:MAX",
              help="Horizontal scaling: N instances, or MIN:MAX (each 1-5). Default: the "
                   "declared one, else what the app has.")
@click.option("--description", default=None, help="App description.")
@timeout_option(default=1200.0, bounds="the whole deploy may take: upload, compute start "
                                       "and deployment")
@_profile_opt
def deploy_command(model: str, app_name: str, resources: tuple[Any, ...],
                   grants: tuple[Any, ...], user_api_scopes: tuple[str, ...],
                   compute_size: str | None, instances: str | None,
                   description: str | None, timeout: float, profile: str | None) -> None:
    """Upload MODEL (a materialized app directory, or a model materialized on the fly) to
    the workspace and deploy it as the Databricks App --app; print its URL."""
    from mlflow_app_agent.apps.workspace.deployment import check_arguments, deploy

    check_arguments(app_name, grants, resources=resources, user_api_scopes=user_api_scopes,
                    compute_size=compute_size, instances=instances)
    # The SDK retries an unreachable host for 5 minutes per call by default; --timeout (at
    # most 2 minutes per call) bounds that, so a typo in the host fails in time.
    client = _client(profile, retry_timeout_seconds=max(1, int(min(timeout, 120))))
    result = deploy(model, app_name=app_name, resources=list(resources), grants=list(grants),
                    user_api_scopes=list(user_api_scopes), compute_size=compute_size,
                    instances=instances, client=client, description=description,
                    timeout=timeout, progress=say)
    click.echo(result.url or f"deployed {result.app_name} (deployment {result.deployment_id})")


@command("check-auth")
@model_argument(required=False)
@resource_option
@click.option("--as-user", "as_user", is_flag=True,
              help="Probe the auth: user|both resources with a signed-in user's token (from "
                   "--access-token-env), as the app would with the forwarded token; a missing "
                   "scope is reported apart from a missing permission.")
@click.option("--access-token-env", default=None, metavar="VAR",
              help="With --as-user: the env var holding the user's access token.")
@timeout_option(default=5.0, bounds="each probe may take (probes run concurrently)")
@_profile_opt
def check_auth_command(model: str | None, resources: tuple[Any, ...], as_user: bool,
                       access_token_env: str | None, timeout: float,
                       profile: str | None) -> None:
    """Probe every resource MODEL declares (plus --resource) with the current credentials;
    print resource | check | OK/FAIL | reason; exit 1 on any failure."""
    import os

    from mlflow_app_agent.apps.workspace.auth_check import check_auth, format_table

    if model is None and not resources:
        raise click.UsageError("give MODEL or at least one --resource")
    config: dict[str, Any] = {}
    if as_user or access_token_env:
        if not (as_user and access_token_env):
            raise click.UsageError("--as-user and --access-token-env go together")
        token = os.environ.get(access_token_env)
        if not token:
            raise Failure(f"env {access_token_env} (named by --access-token-env) "
                          "is not set or empty")
        # the user's token alone: never fall back to the profile's or the env's other auth
        config = {"token": token, "auth_type": "pat", "client_id": None,
                  "client_secret": None}
    client = _client(profile, http_timeout_seconds=timeout,
                     retry_timeout_seconds=max(1, int(timeout)), **config)
    started = time.monotonic()
    rows = check_auth(model, client=client, resources=list(resources), timeout=timeout,
                      as_user=as_user)
    click.echo(format_table(rows))
    failed = sum(not r.ok for r in rows)
    say(f"{len(rows) - failed} OK, {failed} FAIL in {time.monotonic() - started:.1f}s")
    if failed:
        sys.exit(1)
