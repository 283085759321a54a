"""``mlflow-app-agent validate MODEL``: run the contract's properties; exit 0 when they all
hold, 1 with a minimal counterexample when one does not, 2 when MODEL cannot be used."""

from __future__ import annotations

import click

from mlflow_app_agent.cli_common import command, model_argument, timeout_option


class _Unusable(click.ClickException):
    exit_code = 2  # the target cannot be used: not a property failure (1)


@command("validate")
@model_argument(extra="http(s)://HOST:PORT   the URL of a running server: validate")
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
@timeout_option(default=30.0, bounds="each invoke or stream call may take (one generated "
                                    "request); a slower answer fails the property")
@click.option(
    "--property", "properties", multiple=True,
    type=click.Choice(["invoke", "stream", "consistency", "malformed"]),
    help="Check only these properties (repeatable); default all.",
)  # fmt: skip
def validate_command(
    model: str,
    max_examples: int,
    deterministic: bool,
    seed: int | None,
    timeout: float,
    properties: tuple[str, ...],
) -> None:
    """Validate MODEL against the ResponsesAgent contract with generated requests; exit 1
    with a minimal counterexample when a property fails, 2 when MODEL cannot be used.

    Servers are also sent malformed requests, which must get a 4xx with a message, never a
    5xx.
    """
    from mlflow_app_agent.cli_common import error_message
    from mlflow_app_agent.errors import (
        MissingDependencyError,
        MlflowAppAgentError,
        ValidationFailure,
    )
    from mlflow_app_agent.testing.properties import check_agent, require_testing_extras

    try:
        require_testing_extras()
    except MissingDependencyError as exc:
        raise _Unusable(exc.message) from None

    click.echo(f"Validating {model} ({max_examples} examples per property)...", err=True)
    try:
        report = check_agent(
            model,
            max_examples=max_examples,
            deterministic=deterministic,
            properties=properties or None,
            seed=seed,
            timeout=timeout,
            raise_on_failure=False,
        )
    except ValidationFailure as exc:  # the target answered nothing usable (e.g. unreachable)
        raise _Unusable(exc.message) from None
    except MlflowAppAgentError as exc:  # e.g. the model URI does not resolve
        raise _Unusable(f"cannot load {model}: {exc.message}") from None
    except Exception as exc:  # loading ran the agent's own code, which may fail in any way
        raise _Unusable(f"cannot load {model}: {error_message(exc)}") from None
    click.echo(report.format())
    raise SystemExit(0 if report.ok else 1)
