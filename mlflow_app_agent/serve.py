"""``python -m mlflow_app_agent.serve [MODEL] [options]``: the bundled server's
entry point for ``app.yaml`` (the model may come from ``$MLFLOW_APP_AGENT_MODEL`` so the
command stays a fixed list)."""

from __future__ import annotations


def main() -> None:
    from mlflow_app_agent.server.cli import serve_command

    # -h as well as --help, as under `mlflow-app-agent serve`
    serve_command.main(prog_name="python -m mlflow_app_agent.serve",
                       help_option_names=["-h", "--help"])


if __name__ == "__main__":
    main()
