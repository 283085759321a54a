"""What every ``mlflow-app-agent`` command shares, defined once: the ``MODEL`` argument and
its accepted forms, ``--app``, ``--timeout`` (always saying what it bounds), the parameter
types for resource specs, grants and ``NAME=VALUE`` pairs, and the error handler (one
``Error: ...`` line and a non-zero exit, never a traceback).

Only :mod:`click` is imported here, so ``--help`` stays fast; the types import what they
parse with when they parse.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: The accepted forms of ``MODEL``, listed once for every command's ``--help``.
MODEL_FORMS = """\b
MODEL is one of:
  models:/NAME/VERSION  a registered model version (models:/bot/3)
  models:/NAME@ALIAS    the version an alias points to (models:/bot@champion)
  models:/m-ID          a logged model, by its id
  runs:/RUN_ID/PATH     a model logged in a run
  DIR                   a local model directory (with MLmodel) or a
                        materialized app directory (with MANIFEST.json)
  FILE.py[:NAME]        an agent file (models from code): serve, validate"""


def model_argument(*, required: bool = True, extra: str = "") -> Callable[[F], F]:
    """The ``MODEL`` argument, with :data:`MODEL_FORMS` appended to the command's help
    (``extra``: a form only this command takes, e.g. a server URL)."""

    def decorate(fn: F) -> F:
        doc = inspect.cleandoc(fn.__doc__ or "")
        forms = MODEL_FORMS + (f"\n  {extra}" if extra else "")
        fn.__doc__ = f"{doc}\n\n{forms}"
        return click.argument("model", metavar="MODEL" if required else "[MODEL]",
                              required=required)(fn)

    return decorate


class AliasedOption(click.Option):
    """An option whose first spelling is shown in ``--help``; the others are accepted (old
    spellings kept working) but not shown."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, self.opts = self.opts, self.opts[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def app_option(*, required: bool, help: str, old: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``--app NAME``, the Databricks App name, on every command that takes one (``old``:
    former spellings, accepted and hidden)."""
    return click.option("--app", *old, "app_name", cls=AliasedOption, required=required,
                        default=None, metavar="NAME", help=help)


def timeout_option(*, default: float, bounds: str, minimum: float = 0.0) -> Callable[[F], F]:
    """``--timeout SECONDS``; ``bounds`` says what it bounds (e.g. "each probe")."""
    return click.option(
        "--timeout", type=click.FloatRange(min=minimum, min_open=True), default=default,
        show_default=True, metavar="SECONDS", help=f"Seconds {bounds}.")


# --- parameter types ------------------------------------------------------------------------


class ResourceSpec(click.ParamType):
    """``KIND:KEY=VALUE,...`` -> a :class:`~mlflow_app_agent.resources.Resource`."""

    name = "KIND:KEY=VALUE,..."

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from mlflow_app_agent.errors import MlflowAppAgentError
        from mlflow_app_agent.resources import Resource, parse_resource_spec

        if isinstance(value, Resource):
            return value
        try:
            return parse_resource_spec(str(value))
        except MlflowAppAgentError as exc:
            self.fail(exc.message, param, ctx)


class GrantSpec(click.ParamType):
    """``PRINCIPAL:LEVEL`` (``alice@example.com:CAN_USE``, ``group:data-team:CAN_MANAGE``)."""

    name = "PRINCIPAL:LEVEL"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from mlflow_app_agent.apps.workspace.deployment import parse_grant
        from mlflow_app_agent.errors import MlflowAppAgentError

        try:
            return parse_grant(value)
        except MlflowAppAgentError as exc:
            self.fail(exc.message, param, ctx)


class NameValue(click.ParamType):
    """``NAME=VALUE`` -> ``(NAME, VALUE)``; the value may be empty or hold ``=``."""

    name = "NAME=VALUE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        name, sep, rest = str(value).partition("=")
        if not sep or not name.strip():
            self.fail(f"expected NAME=VALUE, got {value!r}", param, ctx)
        return name.strip(), rest


RESOURCE = ResourceSpec()
GRANT = GrantSpec()
NAME_VALUE = NameValue()

resource_option = click.option(
    "--resource", "resources", multiple=True, type=RESOURCE,
    help="A resource the app uses, e.g. serving_endpoint:endpoint_name=my-llm,env=LLM; adds "
         "to or replaces (by name) the ones the model declares. Repeatable.")


# --- errors ---------------------------------------------------------------------------------


def syntax_error_of(exc: BaseException) -> SyntaxError | None:
    """The SyntaxError ``exc`` is or was raised from, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SyntaxError):
            return seen
        seen = seen.__cause__
    return None


def syntax_error_line(exc: SyntaxError, file: str | None = None) -> str:
    """``broken.py:5: invalid syntax (expected ':')``: ``file`` as the user gave it."""
    if file is None:
        file = exc.filename if exc.filename and exc.filename != "<unknown>" else "<source>"
    msg = (exc.msg or "invalid syntax").strip()
    detail = msg if msg.startswith("invalid syntax") else f"invalid syntax ({msg})"
    return f"{file}:{exc.lineno}: {detail}" if exc.lineno else f"{file}: {detail}"


def _same_file(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def error_message(exc: BaseException, *, file: str | None = None) -> str:
    """The one line shown for ``exc``: the toolkit's and MLflow's messages as they are,
    anything else with its type; a syntax error as ``FILE:LINE: invalid syntax (...)``
    (``file``: the source file as the user named it)."""
    syntax = syntax_error_of(exc)
    if syntax is not None:
        if file is not None and syntax.filename not in (None, "", "<unknown>"):
            # the error may be in another file (a module the agent imports)
            if not _same_file(syntax.filename, file):
                file = None
        return syntax_error_line(syntax, file)
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message.strip():
        return message.strip()
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class Command(click.Command):
    """A command whose failures are one ``Error: ...`` line on stderr and exit 1. Usage
    errors stay click's (exit 2); ``SystemExit`` and ``click.exceptions.Exit`` pass."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort,
                SystemExit, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the point: no traceback reaches the user
            raise Failure(error_message(exc)) from None


class Failure(click.ClickException):
    """``Error: <message>`` and exit 1 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]


def command(name: str) -> Callable[[Callable[..., Any]], Command]:
    """``@command("serve")``: a :class:`Command` with the shared error handler."""
    return click.command(name, cls=Command)


def say(message: str) -> None:
    """Progress for people, on stderr (stdout carries the result)."""
    click.echo(message, err=True)
