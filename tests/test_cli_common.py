"""One CLI: every command documents MODEL, --app and --timeout the same way, every option has
help, and every failure is one ``Error: ...`` line with a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mlflow_app_agent.cli import COMMANDS, main
from mlflow_app_agent.cli_common import (
    GRANT,
    MODEL_FORMS,
    NAME_VALUE,
    RESOURCE,
    Command,
    error_message,
)


def _commands() -> dict[str, click.Command]:
    ctx = click.Context(main)
    found = {name: main.get_command(ctx, name) for name in main.list_commands(ctx)}
    return {name: cmd for name, cmd in found.items() if cmd is not None}


def test_every_command_is_listed_and_loads() -> None:
    assert sorted(_commands()) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_the_shared_handler(name: str) -> None:
    command = _commands()[name]
    assert isinstance(command, Command), f"{name}: not built with cli_common.command"
    missing = [p.opts[0] for p in command.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert not missing, f"{name}: options without help: {missing}"
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_model_argument_is_named_and_documented_once(name: str) -> None:
    command = _commands()[name]
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    models = [a for a in arguments if a.name == "model"]
    help_text = command.help or ""
    if models:
        assert models[0].make_metavar(click.Context(command)).strip("[]") == "MODEL"
        assert help_text.count(MODEL_FORMS) == 1
    else:  # commands taking a file or an app directory do not call it a model
        assert "MODEL is one of" not in help_text
        assert not any("model" in (a.name or "") for a in arguments)


def test_app_and_timeout_say_what_they_are() -> None:
    for name, command in _commands().items():
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            if "--timeout" in param.opts:
                text = param.help or ""
                # what is bounded, not just "Seconds."
                assert text.startswith("Seconds ") and len(text.split()) >= 4, (name, text)
            if param.name == "app_name":
                assert param.opts[0] == "--app", name


def test_old_app_name_spelling_still_works_and_is_hidden(tmp_path: Path) -> None:
    command = _commands()["run-local"]
    ctx = command.make_context("run-local", [str(tmp_path), "--app-name", "old-spelling"])
    assert ctx.params["app_name"] == "old-spelling"
    help_text = CliRunner().invoke(main, ["run-local", "--help"]).output
    assert "--app NAME" in help_text and "--app-name" not in help_text


def test_parameter_types() -> None:
    assert NAME_VALUE.convert("A=b=c", None, None) == ("A", "b=c")
    assert NAME_VALUE.convert("EMPTY=", None, None) == ("EMPTY", "")
    with pytest.raises(click.BadParameter, match="expected NAME=VALUE, got 'nope'"):
        NAME_VALUE.convert("nope", None, None)
    grant = GRANT.convert("group:data-team:CAN_USE", None, None)
    assert (grant.principal, grant.kind, grant.level) == ("data-team", "group_name", "CAN_USE")
    with pytest.raises(click.BadParameter, match="PRINCIPAL:CAN_USE"):
        GRANT.convert("bob", None, None)
    resource = RESOURCE.convert("serving_endpoint:endpoint_name=llm,env=LLM", None, None)
    assert resource.kind == "serving_endpoint" and resource.env == "LLM"
    with pytest.raises(click.BadParameter, match="expected key=value"):
        RESOURCE.convert("serving_endpoint:endpoint_name", None, None)


def test_an_unexpected_exception_is_one_line() -> None:
    @click.command("boom", cls=Command)
    def boom() -> None:
        raise RuntimeError("it broke\nsecond line")

    result = CliRunner().invoke(boom, [])
    assert result.exit_code == 1
    assert result.output == "Error: RuntimeError: it broke\n"
    assert isinstance(result.exception, SystemExit)


def test_syntax_error_names_the_file_as_given() -> None:
    exc = SyntaxError("expected ':'", ("/abs/broken.py", 5, 8, "def f()\n"))
    # not the file the user named (a module it imports): that file's own name
    assert error_message(exc, file="broken.py") == "/abs/broken.py:5: invalid syntax (expected ':')"
    unknown = SyntaxError("invalid syntax", ("<unknown>", 2, 1, "x y\n"))
    assert error_message(unknown, file="a.py") == "a.py:2: invalid syntax"


BROKEN = (
    "import mlflow\n"
    "from mlflow_app_agent import Agent\n"
    "\n"
    "agent = Agent('broken')\n"
    "def invoke(request)\n"
    "    return {}\n"
)


def _bad_inputs(tmp: Path) -> dict[str, list[str]]:
    (tmp / "broken.py").write_text(BROKEN)
    (tmp / "empty").mkdir()
    return {
        "quickstart": ["--agent", "broken.py", "--no-materialize"],
        "log": ["broken.py"],
        "info": ["no-such-model"],
        "serve": ["no_such_agent.py"],
        "materialize": ["no-such-model", "out"],
        "verify": ["empty"],
        "run-local": ["empty", "--port", "0"],
        "deploy": ["empty", "--app", "Not_An_App_Name"],
        "check-auth": [],
        "validate": ["no-such-model"],
        "init": ["proj", "--template", "no-such-template"],
    }


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_APP_AGENT_MODEL", raising=False)
    return tmp_path


def test_every_command_has_a_bad_input_case(tmp_path: Path) -> None:
    assert sorted(_bad_inputs(tmp_path)) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_bad_input_is_one_error_line_never_a_traceback(name: str, in_tmp: Path) -> None:
    args = _bad_inputs(in_tmp)[name]
    result = CliRunner().invoke(main, [name, *args])
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output


def test_log_with_a_syntax_error_prints_file_line_and_message(in_tmp: Path) -> None:
    _bad_inputs(in_tmp)
    for args in (["log", "broken.py"], ["quickstart", "--agent", "broken.py"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1
        assert result.output.splitlines()[-1] == \
            "Error: broken.py:5: invalid syntax (expected ':')"
