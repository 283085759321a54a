"""CLI commands of the foundation: ``quickstart``, ``log`` and ``info``."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from mlflow_app_agent.cli_common import (
    RESOURCE,
    Failure,
    command,
    error_message,
    model_argument,
)
from mlflow_app_agent.errors import MlflowAppAgentError

DEFAULT_DB = "mlflow.db"
ECHO_EXAMPLE = Path("examples", "echo", "agent.py")


def default_tracking_uri(workdir: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a sqlite store in the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(workdir or Path.cwd()).resolve() / DEFAULT_DB}"


def activation_hint(path: str | None = None) -> str | None:
    """How to put this environment's ``mlflow-app-agent`` on PATH, when another one (or none)
    is found there: the next steps are printed as bare commands."""
    bin_dir = Path(sys.executable).parent
    found = shutil.which("mlflow-app-agent", path=path)
    if found and Path(found).resolve().parent == bin_dir.resolve():
        return None
    try:
        shown = Path(os.path.relpath(bin_dir))
        shown = shown if not str(shown).startswith("..") else bin_dir
    except ValueError:  # another drive
        shown = bin_dir
    if (bin_dir / "activate").is_file():
        return f"source {shown / 'activate'}"
    return f'export PATH="{bin_dir}:$PATH"'


def find_echo_example() -> Path | None:
    """The echo example in the working directory or in the checkout this package runs from."""
    repo_root = Path(__file__).resolve().parent.parent
    for base in (Path.cwd(), repo_root):
        candidate = base / ECHO_EXAMPLE
        if candidate.is_file():
            return candidate
    return None


def _quiet_mlflow() -> None:
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


@command("quickstart")
@click.option("--agent", "agent_path", type=click.Path(dir_okay=False, exists=True),
              help="Agent file to log (default: examples/echo/agent.py).")
@click.option("--name", "registered_name", default="echo", show_default=True,
              help="Registered model name.")
@click.option("--alias", default="champion", show_default=True, help="Alias to set.")
@click.option("--app-dir", type=click.Path(file_okay=False), default="echo-app",
              show_default=True, help="Where to materialize the Apps source directory.")
@click.option("--no-materialize", is_flag=True, help="Stop after logging and loading.")
def quickstart_command(
    agent_path: str | None, registered_name: str, alias: str, app_dir: str, no_materialize: bool
) -> None:
    """Log the echo agent with git provenance, register it, load it back and answer, then
    materialize it as a Databricks Apps source directory."""
    import mlflow
    from mlflow.exceptions import MlflowException

    _quiet_mlflow()
    path = Path(agent_path) if agent_path else find_echo_example()
    if path is None:
        raise Failure(f"{ECHO_EXAMPLE} not found; run from a checkout or pass --agent FILE",
                      exit_code=2)
    uri = default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    click.echo(f"Tracking store: {uri}")
    try:
        from mlflow_app_agent.flavor import log_model

        info = log_model(str(path), name="agent", registered_model_name=registered_name)
        version = str(info.registered_model_version)
        mlflow.MlflowClient().set_registered_model_alias(registered_name, alias, version)
        model_uri = f"models:/{registered_name}/{version}"
        from mlflow_app_agent.model.load import load_agent

        loaded = load_agent(f"models:/{registered_name}@{alias}")
        request = {"input": [{"role": "user", "content": "Hello from the quickstart"}]}
        answer = loaded.agent.invoke(request)["output"][0]["content"][0]["text"]
        events = list(loaded.agent.stream(request))
    except (MlflowAppAgentError, MlflowException, SyntaxError) as exc:  # e.g. a store MLflow
        raise Failure(error_message(exc, file=str(path))) from None  # refuses, a typo
    git = loaded.git or {}
    click.echo(f"Logged {path} as {model_uri} (alias @{alias}, logged model {info.model_id})")
    if git:
        click.echo(f"Git: {git.get('commit', '')[:12]} on {git.get('branch')} "
                   f"(dirty: {git.get('dirty')})")
    click.echo(f"invoke -> {answer!r}; stream -> {len(events)} events")
    if not no_materialize:
        try:
            from mlflow_app_agent.apps import materialize, verify
        except ImportError:
            no_materialize = True
        else:
            try:
                out = materialize(model_uri, app_dir, force=True)
                problems = verify(out)
            except MlflowAppAgentError as exc:
                raise Failure(exc.message) from None
            click.echo(f"Materialized {model_uri} into {out} (verify: "
                       f"{'OK' if not problems else problems})")
    steps = [
        (f"mlflow-app-agent serve {model_uri}", "/invocations, /responses"),
        (f"mlflow-app-agent validate {model_uri}", "property-based checks"),
    ]
    if not no_materialize:
        steps += [
            (f"mlflow-app-agent run-local {app_dir}", "as Databricks Apps runs it"),
            (f"mlflow-app-agent deploy {app_dir} --app echo", "to a workspace"),
        ]
    width = max(len(step) for step, _ in steps) + 2
    click.echo("\nNext:")
    hint = activation_hint()
    if hint:
        click.echo(f"  # First put this environment on PATH: {hint}")
    for step, why in steps:
        click.echo(f"  {step.ljust(width)}# {why}")


@command("log")
@click.argument("agent_file", metavar="FILE", type=click.Path(dir_okay=False, exists=True))
@click.option("--name", default="agent", show_default=True, help="Logged model name.")
@click.option("--registered-model-name", metavar="NAME",
              help="Register the model under NAME (prints its models:/NAME/VERSION).")
@click.option("--code-path", "code_paths", multiple=True, type=click.Path(exists=True),
              help="A local file or package the agent imports, logged with it. Repeatable.")
@click.option("--resource", "resources", multiple=True, type=RESOURCE,
              help="A resource the agent uses, e.g. serving_endpoint:endpoint_name=llm,env=LLM."
                   " Repeatable.")
@click.option("--git", "git_mode", type=click.Choice(["auto", "require-clean", "off"]),
              default="auto", show_default=True,
              help="Record the checkout's git state: auto (if in a repository), require-clean "
                   "(refuse uncommitted changes) or off.")
@click.option("--input-example", metavar="JSON",
              help="JSON Responses request used to check the agent.")
@click.option("--pip-requirement", "pip_requirements", multiple=True, metavar="REQUIREMENT",
              help="A pip requirement of the model, replacing the inferred ones. Repeatable.")
@click.option("--model-config", type=click.Path(exists=True, dir_okay=False),
              help="YAML or JSON file with the agent's model configuration (see get_config).")
def log_command(
    agent_file: str, name: str, registered_model_name: str | None, code_paths: tuple[str, ...],
    resources: tuple[Any, ...], git_mode: Any, input_example: str | None,
    pip_requirements: tuple[str, ...], model_config: str | None,
) -> None:
    """Log FILE (a models-from-code agent file) to MLFLOW_TRACKING_URI or ./mlflow.db."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlflow_app_agent.flavor import log_model

    try:
        example = json.loads(input_example) if input_example else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--input-example"
                                 ) from None
    _quiet_mlflow()
    mlflow.set_tracking_uri(default_tracking_uri())
    try:
        info = log_model(
            agent_file,
            name=name,
            registered_model_name=registered_model_name,
            code_paths=list(code_paths) or None,
            resources=list(resources) or None,
            git=git_mode,
            input_example=example,
            pip_requirements=list(pip_requirements) or None,
            model_config=model_config,
        )
    except (MlflowAppAgentError, MlflowException, SyntaxError) as exc:  # e.g. a store MLflow
        raise Failure(error_message(exc, file=agent_file)) from None  # refuses, a typo
    version = info.registered_model_version
    click.echo(json.dumps({
        "model_uri": info.model_uri,
        "model_id": info.model_id,
        "registered_model_name": registered_model_name,
        "registered_model_version": version,
        # what serve / materialize / deploy take for a registry version
        "registered_model_uri": f"models:/{registered_model_name}/{version}"
        if registered_model_name and version else None,
    }, indent=2))


@command("info")
@model_argument()
def info_command(model: str) -> None:
    """Print what MODEL is: agent, registry version, git, resources."""
    import mlflow

    from mlflow_app_agent.model.load import load_agent

    _quiet_mlflow()
    mlflow.set_tracking_uri(default_tracking_uri())
    loaded = load_agent(model)
    click.echo(json.dumps({
        "name": loaded.name,
        "flavor": loaded.flavor,
        "model_uri": loaded.model_uri,
        "registered_name": loaded.registered_name,
        "registered_version": loaded.registered_version,
        "model_id": loaded.model_id,
        "run_id": loaded.run_id,
        "interfaces": list(loaded.agent.interfaces),
        "native_interfaces": list(loaded.agent.native_interfaces),
        "git": loaded.git,
        "resources": [r.to_dict() for r in loaded.resources],
    }, indent=2, sort_keys=True))
