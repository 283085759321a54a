"""CLI commands ``materialize``, ``verify`` and ``run-local``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from mlflow_app_agent.cli_common import (
    NAME_VALUE,
    Failure,
    app_option,
    command,
    model_argument,
    say,
)
from mlflow_app_agent.errors import ManifestMismatchError


@command("materialize")
@model_argument()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it is not empty.")
@click.option("--installer", type=click.Choice(["uv", "pip"]), default="uv", show_default=True,
              help="uv: pyproject.toml + uv.lock (Apps installs with uv, no preinstalled "
                   "libraries); pip: a pinned requirements.txt.")
@click.option("--python", "python", default="3.11", show_default=True,
              help="The target CPython the app runs on.")
@click.option("--platform", default="x86_64-manylinux_2_35", show_default=True,
              help="The target platform (Apps: Ubuntu 22.04 x86_64).")
@click.option("--exclude-newer", default=None, metavar="DATE",
              help="Resolve against the index as of DATE (default: the model's creation time).")
@click.option("--timeout", default=300.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds the resolution may take (index unreachable: an error then).")
@click.option("--index-url", default=None, help="Package index to resolve against.")
@click.option("--full-mlflow/--no-full-mlflow", default=None,
              help="Install full mlflow instead of mlflow-skinny (default: as logged).")
@click.option("--registry-timeout", type=click.FloatRange(min=1), default=5.0,
              show_default=True, help="Seconds per call to the tracking/registry server.")
@click.option("--registry-retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Retries of a failed registry call (backoff 0, 2, 4 ... s).")
@click.option("--user-api-scope", "user_api_scopes", multiple=True, metavar="SCOPE",
              help="Add a user-authorization scope (e.g. sql) to what the model declares; "
                   "recorded in MANIFEST.json for deploy. Repeatable.")
@click.option("--compute-size", default=None, metavar="SIZE",
              help="App compute size to record (MEDIUM, LARGE, ...); replaces the model's.")
@click.option("--instances", default=None, metavar="N|MIN:MAX",
              help="Instances to record (each 1-5); replaces the model's.")
@click.option("--bundle", is_flag=True,
              help="Make OUT_DIR a Databricks Asset Bundle: the app in OUT_DIR/app and "
                   "OUT_DIR/databricks.yml (needs --app).")
@app_option(required=False,
            help="With --bundle: the Databricks App name the bundle deploys to.")
@click.option("--app-factory", metavar="MODULE:FUNCTION", default=None,
              help="The app's command serves FUNCTION(app) from the model's code_paths "
                   "(serve --app-factory); checked to ship with the model.")
def materialize_command(model: str, out_dir: str, force: bool, installer: str,
                        python: str, platform: str, exclude_newer: str | None,
                        timeout: float, index_url: str | None,
                        full_mlflow: bool | None, registry_timeout: float,
                        registry_retries: int, user_api_scopes: tuple[str, ...],
                        compute_size: str | None, instances: str | None, bundle: bool,
                        app_name: str | None, app_factory: str | None) -> None:
    """Write the Databricks Apps source directory for MODEL into OUT_DIR."""
    import signal

    from mlflow_app_agent import registry_budget
    from mlflow_app_agent.apps.build.bundle import APP_SUBDIR, materialize_bundle
    from mlflow_app_agent.apps.build.materialize import BuildOptions, materialize

    deploy: dict[str, Any] = {"user_api_scopes": list(user_api_scopes),
                              "compute_size": compute_size,
                              "instances": instances,
                              "app_factory": app_factory}
    if app_name is not None and not bundle:
        raise click.UsageError("--app goes with --bundle")
    if bundle and app_name is None:
        raise click.UsageError("--bundle needs --app NAME (the Databricks App name)")
    options = BuildOptions(installer=installer, python=python, platform=platform,
                           exclude_newer=exclude_newer, timeout=timeout,
                           index_url=index_url, full_mlflow=full_mlflow)

    def build() -> Path:
        if bundle:
            assert app_name is not None
            return materialize_bundle(model, out_dir, app_name=app_name, force=force,
                                      progress=say, options=options, **deploy)
        return materialize(model, out_dir, force=force, progress=say, options=options,
                           **deploy)

    def _terminate(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through materialize's cleanup of its staging dir

    signal.signal(signal.SIGTERM, _terminate)
    started = time.perf_counter()
    try:
        with registry_budget.bounded(registry_timeout, registry_retries):
            if ":" in model and not model.startswith("file:"):
                import mlflow

                host = registry_budget.public_host(mlflow.get_registry_uri())
                say(f"fetching {model} from {host} (each call: {registry_timeout:g} s "
                    f"timeout, {registry_retries} retries)")
                with registry_budget.progress(model, host, registry_retries):
                    root = build()
            else:
                root = build()
    except KeyboardInterrupt:
        raise Failure("interrupted; nothing was written") from None
    out = root / APP_SUBDIR if bundle else root
    say(f"Done in {time.perf_counter() - started:.1f} s. Next: mlflow-app-agent run-local {out}")
    if bundle:
        say(f"Bundle: {root}/databricks.yml (databricks bundle deploy -t prod, from {root})")
    click.echo(str(out))


@command("verify")
@click.argument("app_dir", type=click.Path(file_okay=False))
@click.option("--installer", type=click.Choice(["uv", "pip"]), default=None,
              help="Also require this install mode (default: the one materialized).")
def verify_command(app_dir: str, installer: str | None) -> None:
    """Check APP_DIR against its MANIFEST.json; exit 1 naming each changed, missing or extra
    file."""
    from mlflow_app_agent.apps.build.manifest import read_manifest, verify

    try:
        verify(app_dir, installer=installer)
    except ManifestMismatchError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        raise Failure(exc.message) from None
    files = read_manifest(app_dir)["files"]
    click.echo(f"OK: {app_dir} matches its MANIFEST.json ({len(files)} files)")


@command("run-local")
@click.argument("app_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--as-user", "as_user", default="local-user@example.com", show_default=True,
              help="Email the local proxy forwards as X-Forwarded-Email, as Apps would.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the local proxy (0 picks a free one).")
@app_option(required=False, old=("--app-name",),
            help="The app's name, set as DATABRICKS_APP_NAME (default: the directory name).")
@click.option("--access-token-env", default=None, metavar="VAR",
              help="Forward the value of env VAR as X-Forwarded-Access-Token (on-behalf-of).")
@click.option("--env", "extra_env", multiple=True, type=NAME_VALUE,
              help="Set an env var for the app, e.g. a valueFrom resource's value. Repeatable.")
@click.option("--fresh", is_flag=True, help="Build a new venv instead of reusing the cached one.")
@click.option("--ready-timeout", default=120.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0, min_open=True),
              help="Seconds to wait, after the app process starts, for its /ready to answer "
                   "(the venv build and pip install are not counted).")
def run_local_command(
    app_dir: str, as_user: str, port: int, app_name: str | None,
    access_token_env: str | None, extra_env: tuple[tuple[str, str], ...], fresh: bool,
    ready_timeout: float,
) -> None:
    """Run APP_DIR as Databricks Apps would: a fresh venv, uv sync --frozen (uv mode) or pip
    install -r requirements.txt (pip mode), the app.yaml command with the Apps environment, behind a proxy adding the Apps headers."""
    from mlflow_app_agent.apps.local.run_local import RunLocalOptions, run_local

    env = dict(extra_env)
    options = RunLocalOptions(
        as_user=as_user, port=port, app_name=app_name, access_token_env=access_token_env,
        extra_env=env, fresh=fresh, ready_timeout=ready_timeout,
    )
    on_ready: Callable[[str], None] = lambda url: click.echo(  # noqa: E731
        f"App running at {url} (as {as_user}); Ctrl-C to stop."
    )
    code = run_local(app_dir, options, progress=say, on_ready=on_ready)
    raise SystemExit(code)
