"""``mlflow-app-agent init DIR [--template NAME] [--name NAME]``."""

from __future__ import annotations

from pathlib import Path

import click

from mlflow_app_agent.cli_common import command
from mlflow_app_agent.templates.scaffolder import default_name, list_templates, scaffold


def _template_help() -> str:
    return "; ".join(f"{t.name}: {t.description}" for t in list_templates().values())


@command("init")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--template",
    "-t",
    default="echo",
    show_default=True,
    help="Project template (see --list).",
)
@click.option("--name", default=None, help="Agent name (default: from DIRECTORY).")
@click.option("--list", "list_only", is_flag=True, help="List the templates and exit.")
def init_command(directory: Path | None, template: str, name: str | None, list_only: bool) -> None:
    """Create a new agent project in DIRECTORY from a template.

    The project runs its own tests and can be logged with `log_model` right away.
    """
    if list_only:
        for info in list_templates().values():
            click.echo(f"{info.name:14} {info.description}")
        return
    if directory is None:
        raise click.UsageError("Missing argument 'DIRECTORY'.")
    created = scaffold(directory, template, name=name)
    agent_name = name or default_name(directory)
    click.echo(f"Created {template} agent {agent_name!r} in {directory} ({len(created)} files):")
    for path in created:
        click.echo(f"  {path}")
    click.echo(
        "\nNext steps:\n"
        f"  cd {directory}\n"
        "  pip install -r requirements-dev.txt\n"
        "  pytest\n"
        "  # then run notebook.ipynb to log and register the agent (see README.md)"
    )
