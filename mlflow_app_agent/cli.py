"""The ``mlflow-app-agent`` command line. Sub-commands live next to what they drive and are
imported only when invoked, so ``--help`` stays fast."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from mlflow_app_agent._version import __version__

# command name -> "module:attribute" of a click command
COMMANDS = {
    "quickstart": "mlflow_app_agent.quickstart:quickstart_command",
    "log": "mlflow_app_agent.quickstart:log_command",
    "info": "mlflow_app_agent.quickstart:info_command",
    "serve": "mlflow_app_agent.server.cli:serve_command",
    "materialize": "mlflow_app_agent.apps.cli:materialize_command",
    "verify": "mlflow_app_agent.apps.cli:verify_command",
    "run-local": "mlflow_app_agent.apps.cli:run_local_command",
    "deploy": "mlflow_app_agent.apps.workspace.cli:deploy_command",
    "check-auth": "mlflow_app_agent.apps.workspace.cli:check_auth_command",
    "validate": "mlflow_app_agent.testing.cli:validate_command",
    "init": "mlflow_app_agent.templates.cli:init_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._available(name))

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package that does not import (yet)
            return False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not self._available(cmd_name):
            return None
        module_name, attr = target.split(":")
        command: Any = getattr(importlib.import_module(module_name), attr)
        return command  # type: ignore[no-any-return]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlflow-app-agent")
def main() -> None:
    """Log, materialize, serve, validate and deploy MLflow agents as Databricks Apps."""


if __name__ == "__main__":  # pragma: no cover
    main()
