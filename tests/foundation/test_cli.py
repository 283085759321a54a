from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_app_agent.cli import main

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("quickstart", "log", "info"):
        assert command in result.output


def test_quickstart_logs_registers_and_loads(
    tracking_uri: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["quickstart", "--name", unique_name, "--app-dir", str(tmp_path / "app")]
    )
    assert result.exit_code == 0, result.output
    assert f"models:/{unique_name}/1" in result.output
    assert "invoke -> 'Hello from the quickstart'" in result.output
    assert f"mlflow-app-agent serve models:/{unique_name}/1" in result.output
    info = CliRunner().invoke(main, ["info", f"models:/{unique_name}@champion"])
    assert info.exit_code == 0, info.output
    facts = json.loads(info.stdout)
    assert facts["registered_version"] == "1" and facts["name"] == "echo"
    assert facts["git"]["commit"]


def test_quickstart_defaults_to_sqlite_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        result = CliRunner().invoke(main, ["quickstart", "--no-materialize"])
    finally:
        mlflow.set_tracking_uri(None)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mlflow.db").is_file()
    assert f"sqlite:///{tmp_path}/mlflow.db" in result.output


def test_log_command(tracking_uri: str, unique_name: str) -> None:
    result = CliRunner().invoke(main, [
        "log", str(ECHO), "--registered-model-name", unique_name, "--git", "off",
        "--resource", "serving_endpoint:endpoint_name=llm,env=LLM",
        "--input-example", '{"input": [{"role": "user", "content": "x"}]}',
        "--pip-requirement", "mlflow-skinny",
    ])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["registered_model_version"] == 1 and out["model_id"].startswith("m-")
    assert out["registered_model_uri"] == f"models:/{out['registered_model_name']}/1"


def test_log_command_errors_are_one_clear_line(tracking_uri: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import mlflow\nfrom mlflow_app_agent import Agent\na = Agent('bad')\n"
        "@a.invoke_method\ndef f(r):\n    return 'plain text'\nmlflow.models.set_model(a)\n"
    )
    result = CliRunner().invoke(main, ["log", str(bad), "--git", "off"])
    assert result.exit_code == 1
    assert "Error: invoke output is a str" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["log", str(ECHO), "--input-example", "{nope"])
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = CliRunner().invoke(main, ["info", "nowhere"])
    assert result.exit_code == 1 and "not a model URI" in result.output


def test_quickstart_with_a_broken_agent_is_one_clear_line(
    tracking_uri: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad_agent.py"
    bad.write_text(
        "import mlflow\nfrom mlflow_app_agent import Agent\na = Agent('bad')\n"
        "@a.invoke_method\ndef f(r):\n    return 'plain text'\nmlflow.models.set_model(a)\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["quickstart", "--agent", str(bad), "--name", unique_name])
    assert result.exit_code == 1
    assert "Error: invoke output is a str" in result.output
    assert "Traceback" not in result.output and "Materialized" not in result.output
    assert not (tmp_path / "echo-app").exists()


def test_the_echo_example_in_the_working_directory_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_app_agent.quickstart import find_echo_example

    assert find_echo_example() == ECHO  # from the checkout this package runs from
    local = tmp_path / "examples" / "echo" / "agent.py"
    local.parent.mkdir(parents=True)
    local.write_text(ECHO.read_text())
    monkeypatch.chdir(tmp_path)
    assert find_echo_example() == local


def test_unknown_and_unavailable_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow_app_agent import cli

    result = CliRunner().invoke(main, ["deploy-to-mars"])
    assert result.exit_code == 2 and "No such command 'deploy-to-mars'" in result.output
    # a command whose module (or its parent package) is not importable is hidden, not a crash
    monkeypatch.setitem(cli.COMMANDS, "ghost", "no_such_package_xyz.sub:ghost_command")
    listed = CliRunner().invoke(main, ["--help"])
    assert listed.exit_code == 0 and "ghost" not in listed.output
    result = CliRunner().invoke(main, ["ghost"])
    assert result.exit_code == 2 and "No such command 'ghost'" in result.output


def test_next_steps_say_how_to_put_the_command_on_path(tmp_path: Path) -> None:
    import sys

    from mlflow_app_agent.quickstart import activation_hint

    bin_dir = Path(sys.executable).parent
    # README runs `.venv/bin/mlflow-app-agent quickstart` without activating the venv: the
    # bare `mlflow-app-agent ...` next steps would then be "command not found".
    hint = activation_hint(path=str(tmp_path))
    assert hint is not None
    if (bin_dir / "activate").is_file():
        assert hint.startswith("source ")
        assert Path(hint.removeprefix("source ")).resolve() == (bin_dir / "activate").resolve()
    else:
        assert str(bin_dir) in hint
    if (bin_dir / "mlflow-app-agent").is_file():
        assert activation_hint(path=str(bin_dir)) is None


def test_quickstart_prints_the_activation_hint(
    tracking_uri: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    import shutil

    # git stays reachable (provenance); this environment's bin directory does not
    monkeypatch.setenv("PATH", str(Path(shutil.which("git") or "/usr/bin/git").parent))
    result = CliRunner().invoke(main, ["quickstart", "--name", unique_name,
                                       "--no-materialize"])
    assert result.exit_code == 0, result.output
    assert "First put this environment on PATH:" in result.output


def test_a_store_mlflow_refuses_is_one_line_for_log_and_quickstart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLFLOW_TRACKING_URI set to a plain directory: MLflow refuses its file store.
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    for args in (["log", str(ECHO)], ["quickstart", "--agent", str(ECHO), "--no-materialize"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert "Error: The filesystem tracking backend" in result.stderr
        assert isinstance(result.exception, SystemExit), result.exception
