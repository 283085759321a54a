"""``mlflow-app-agent validate TARGET``: run the contract's properties; exit 0 when they all
hold, 1 with a minimal counterexample when one does not, 2 when TARGET cannot be used."""

from __future__ import annotations

import click


@click.command("validate")
@click.argument("target")
@click.option(
    "--max-examples", type=click.IntRange(min=1), default=50, show_default=True,
    help="Generated requests per property.",
)  # fmt: skip
@click.option(
    "--deterministic/--no-deterministic", default=True, show_default=True,
    help="Whether the agent answers the same request the same way; --no-deterministic "
    "(LLM-backed agents) skips the stream-equals-invoke property.",
)  # fmt: skip
@click.option(
    "--seed", type=int, default=None,
    help="Random seed; without it runs are derandomized (the same requests every time).",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
    help="Seconds each invoke or stream may take.",
)  # fmt: skip
@click.option(
    "--property", "properties", multiple=True,
    type=click.Choice(["invoke", "stream", "consistency", "malformed"]),
    help="Check only these properties (repeatable); default all.",
)  # fmt: skip
def validate_command(
    target: str,
    max_examples: int,
    deterministic: bool,
    seed: int | None,
    timeout: float,
    properties: tuple[str, ...],
) -> None:
    """Validate TARGET against the ResponsesAgent contract with generated requests.

    TARGET is a model URI (models:/name/3, models:/name@champion, runs:/<id>/agent), a local
    model or materialized app directory, or the URL of a running server
    (http://127.0.0.1:8000). Servers are also sent malformed requests, which must get a 4xx
    with a message, never a 5xx.
    """
    from mlflow_app_agent.errors import (
        MissingDependencyError,
        MlflowAppAgentError,
        ValidationFailure,
    )
    from mlflow_app_agent.testing.properties import check_agent, require_testing_extras

    try:
        require_testing_extras()
    except MissingDependencyError as exc:
        click.echo(f"Error: {exc.message}", err=True)
        raise SystemExit(2) from None

    click.echo(f"Validating {target} ({max_examples} examples per property)...", err=True)
    try:
        report = check_agent(
            target,
            max_examples=max_examples,
            deterministic=deterministic,
            properties=properties or None,
            seed=seed,
            timeout=timeout,
            raise_on_failure=False,
        )
    except ValidationFailure as exc:  # the target answered nothing usable (e.g. unreachable)
        click.echo(f"Error: {exc.message}", err=True)
        raise SystemExit(2) from None
    except MlflowAppAgentError as exc:  # e.g. the model URI does not resolve
        click.echo(f"Error: cannot load {target}: {exc.message}", err=True)
        raise SystemExit(2) from None
    except Exception as exc:  # loading ran the agent's own code, which may fail in any way
        click.echo(f"Error: cannot load {target}: {type(exc).__name__}: {exc}", err=True)
        raise SystemExit(2) from None
    click.echo(report.format())
    raise SystemExit(0 if report.ok else 1)
