"""run-local with a tiny stdlib app (no packages to install): environment, port
substitution, proxy, readiness and failure modes. The full model e2e is in
test_run_local_e2e.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from mlflow_app_agent.apps.build.app_yaml import AppSpec, render
from mlflow_app_agent.apps.local import run_local
from mlflow_app_agent.apps.local.proxy import bind
from mlflow_app_agent.errors import RunLocalError

APP = '''
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv[1:], "headers": {k.lower(): v for k, v in self.headers.items()},
                           "env": dict(os.environ), "cwd": os.getcwd(),
                           "python": sys.executable}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def make_app(root: Path, command: list[str], env: list[dict[str, str]] | None = None) -> Path:
    root.mkdir()
    (root / "app.py").write_text(APP)
    (root / "requirements.txt").write_text("# nothing to install\n")
    (root / "app.yaml").write_text(render(AppSpec(command=command, env=env or [])))
    return root


pytestmark = pytest.mark.e2e


def test_runs_the_command_with_the_apps_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_LOCAL_SECRET", "must-not-leak")
    monkeypatch.setenv("MY_TOKEN", "obo-token")
    app_dir = make_app(tmp_path / "My App", ["python", "app.py", "$DATABRICKS_APP_PORT"], env=[
        {"name": "GREETING", "value": "hi"}, {"name": "LLM", "valueFrom": "llm-endpoint"}])
    messages: list[str] = []
    options = run_local.RunLocalOptions(
        as_user="ada@example.com", port=0, access_token_env="MY_TOKEN",
        extra_env={"LLM": "my-endpoint"})
    with run_local.LocalApp(app_dir, options, progress=messages.append) as app:
        seen = httpx.get(f"{app.url}/anything").json()
        venv = Path(seen["env"]["VIRTUAL_ENV"])
    assert seen["argv"] == [str(app.app_port)]
    env = seen["env"]
    assert env["DATABRICKS_APP_PORT"] == str(app.app_port)
    assert env["DATABRICKS_APP_NAME"] == "my-app"
    assert env["GREETING"] == "hi" and env["LLM"] == "my-endpoint"
    assert "SOME_LOCAL_SECRET" not in env and "MY_TOKEN" not in env
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert Path(seen["python"]).parent == venv / "bin"
    assert Path(seen["cwd"]) == app_dir.resolve()
    assert seen["headers"]["x-forwarded-email"] == "ada@example.com"
    assert seen["headers"]["x-forwarded-access-token"] == "obo-token"
    assert any("Creating a fresh venv" in m or "Reusing" in m for m in messages)
    assert app.process is not None and app.process.poll() is not None  # stopped


def test_venv_is_cached_by_requirements_and_fresh_rebuilds(tmp_path: Path) -> None:
    app_dir = make_app(tmp_path / "a", ["python", "app.py", "$DATABRICKS_APP_PORT"])
    root = tmp_path / "venvs"
    said: list[str] = []
    first = run_local.ensure_venv(app_dir, root=root, progress=said.append)
    assert any("Creating a fresh venv" in m for m in said)
    said.clear()
    assert run_local.ensure_venv(app_dir, root=root, progress=said.append) == first
    assert any("Reusing" in m for m in said)
    said.clear()
    run_local.ensure_venv(app_dir, root=root, fresh=True, progress=said.append)
    assert any("Creating a fresh venv" in m for m in said)
    (app_dir / "requirements.txt").write_text("# changed\n")
    assert run_local.requirements_key(app_dir) != first.name


def test_pip_failure_is_reported_and_nothing_is_cached(tmp_path: Path) -> None:
    app_dir = make_app(tmp_path / "a", ["python", "app.py"])
    (app_dir / "requirements.txt").write_text("./wheels/not-there-1.0-py3-none-any.whl\n")
    root = tmp_path / "venvs"
    with pytest.raises(RunLocalError, match="pip install -r requirements.txt failed"):
        run_local.ensure_venv(app_dir, root=root)
    assert not (root / run_local.requirements_key(app_dir)).exists()


def test_app_exiting_before_ready_shows_its_output(tmp_path: Path) -> None:
    app_dir = make_app(tmp_path / "a", [
        "python", "-c", "import sys; print('missing config FOO'); sys.exit(3)"])
    with pytest.raises(RunLocalError, match=r"(?s)exited with code 3.*missing config FOO"):
        run_local.LocalApp(app_dir, run_local.RunLocalOptions(port=0)).start()


def test_not_ready_in_time(tmp_path: Path) -> None:
    app_dir = make_app(tmp_path / "a", ["python", "-c", "import time; time.sleep(30)"])
    app = run_local.LocalApp(app_dir, run_local.RunLocalOptions(port=0, ready_timeout=1.5))
    with pytest.raises(RunLocalError, match="not ready within 2 s"):
        app.start()
    assert app.process is not None and app.process.poll() is not None


def test_busy_port_and_missing_token_env(tmp_path: Path) -> None:
    app_dir = make_app(tmp_path / "a", ["python", "app.py", "$DATABRICKS_APP_PORT"])
    taken = bind("127.0.0.1", 0)
    taken.listen()
    try:
        opts = run_local.RunLocalOptions(port=taken.getsockname()[1])
        with pytest.raises(RunLocalError, match="--port 0"):
            run_local.LocalApp(app_dir, opts).start()
    finally:
        taken.close()
    os.environ.pop("NO_SUCH_TOKEN_VAR", None)
    opts = run_local.RunLocalOptions(port=0, access_token_env="NO_SUCH_TOKEN_VAR")
    with pytest.raises(RunLocalError, match="NO_SUCH_TOKEN_VAR is not set"):
        run_local.LocalApp(app_dir, opts).start()


def test_command_substitution_and_host() -> None:
    spec = AppSpec(command=["python", "-m", "mlflow_app_agent.serve", ".",
                            "--port=${DATABRICKS_APP_PORT}"])
    venv = Path(os.__file__).parents[2]  # any dir; python is found on PATH as a fallback
    cmd = run_local.app_command(spec, venv, 8123, "127.0.0.1")
    assert cmd[1:] == ["-m", "mlflow_app_agent.serve", ".", "--port=8123", "--host=127.0.0.1"]
    assert json.dumps(cmd)  # plain strings, no shell


def test_notes_local_changes_against_the_manifest(tmp_path: Path) -> None:
    from mlflow_app_agent.apps.build.manifest import write_manifest

    app_dir = make_app(tmp_path / "a", ["python", "app.py", "$DATABRICKS_APP_PORT"])
    write_manifest(app_dir, {"source_uri": "test"})
    (app_dir / "app.py").write_text(APP + "\n# edited\n")
    said: list[str] = []
    with run_local.LocalApp(app_dir, run_local.RunLocalOptions(port=0), progress=said.append):
        pass
    assert any("differs from its MANIFEST.json (changed: app.py)" in m for m in said)


def test_where_traces_go_locally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = AppSpec(command=["python"], env=[{"name": "MLFLOW_TRACKING_URI",
                                             "value": "databricks"}])
    venv = tmp_path / "venv"
    said: list[str] = []
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg
    monkeypatch.chdir(tmp_path)
    for var in ("DATABRICKS_HOST", "DATABRICKS_CONFIG_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mine.db")
    assert run_local._tracking_env(spec, venv, said.append) == {
        "MLFLOW_TRACKING_URI": "sqlite:///mine.db"}
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    # no credentials, no sqlalchemy in the venv: tracing off rather than failing per request
    assert run_local._tracking_env(spec, venv, said.append) == {
        "MLFLOW_APP_AGENT_TRACING": "false"}
    (venv / "lib" / "python3.11" / "site-packages" / "sqlalchemy").mkdir(parents=True)
    assert run_local._tracking_env(spec, venv, said.append) == {
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"}
    (tmp_path / ".databrickscfg").write_text("[DEFAULT]\nhost = https://x\n")
    assert run_local._tracking_env(spec, venv, said.append) == {}  # keeps app.yaml's
    assert len(said) == 2


def test_out_of_range_port_is_a_usage_error_before_any_install(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mlflow_app_agent.cli import main

    app_dir = make_app(tmp_path / "a", ["python", "app.py", "$DATABRICKS_APP_PORT"])
    result = CliRunner().invoke(main, ["run-local", str(app_dir), "--port", "99999"])
    assert result.exit_code == 2, result.output
    assert "'--port'" in result.output and "99999" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_ready_timeout_must_be_positive(tmp_path: Path, value: str) -> None:
    from click.testing import CliRunner

    from mlflow_app_agent.cli import main

    app_dir = make_app(tmp_path / "a", ["python", "app.py", "$DATABRICKS_APP_PORT"])
    result = CliRunner().invoke(main, ["run-local", str(app_dir), "--ready-timeout", value])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--ready-timeout'" in result.output
