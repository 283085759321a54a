"""What ``init`` adds for CI and AI coding assistants: ``.github/workflows/deploy.yml``,
``AGENTS.md`` and ``register.py``. actionlint cannot be installed here (its PyPI wrapper
downloads the binary at build time), so the workflow is parsed and checked, every
``mlflow-app-agent`` command it or AGENTS.md names is checked against that command's real
``--help``, and (e2e) every ``run`` step runs in order against a sqlite registry and the
local workspace server, except the network-facing ``pip install`` and the project's own
``pytest`` (which test_generated_projects.py runs)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mlflow_app_agent.cli import COMMANDS, main
from mlflow_app_agent.templates import scaffold

TEMPLATES = ["echo", "tool-calling"]
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _workflow(project: Path) -> dict[Any, Any]:
    doc = yaml.safe_load((project / ".github" / "workflows" / "deploy.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def _commands(text: str) -> list[list[str]]:
    """Every ``mlflow-app-agent ...`` command line in ``text`` (comments dropped)."""
    out = []
    for line in text.splitlines():
        line = line.split(" #")[0].strip().removeprefix("run: ").strip()
        if line.startswith("mlflow-app-agent "):
            out.append(shlex.split(_EXPR.sub("X", line)))
    return out


@pytest.fixture(scope="module", params=TEMPLATES)
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp(request.param) / "sales-agent"
    scaffold(dest, request.param)
    return dest


def test_workflow_shape(project: Path) -> None:
    doc = _workflow(project)
    on = doc[True] if True in doc else doc["on"]  # YAML 1.1 reads a bare `on` as true
    assert on["push"]["branches"] == ["main"]
    assert doc["permissions"] == {"contents": "read"}
    job = doc["jobs"]["deploy"]
    steps = job["steps"]
    assert all(("uses" in s) != ("run" in s) for s in steps)
    assert all(re.fullmatch(r"actions/[a-z-]+@v\d+", s["uses"]) for s in steps if "uses" in s)
    # credentials only from the CI's secret store, never written in the file
    for key in ("DATABRICKS_HOST", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        assert job["env"][key] == f"${{{{ secrets.{key} }}}}"
    text = (project / ".github" / "workflows" / "deploy.yml").read_text()
    assert not re.search(r"dapi[0-9a-f]|token:\s*\S", text)
    runs = [s["run"] for s in steps if "run" in s]
    assert any(r.startswith("pytest") for r in runs)
    assert any("mlflow-app-agent validate" in r for r in runs)
    assert any("register.py log" in r for r in runs) and any("promote" in r for r in runs)
    assert runs[-2].startswith("mlflow-app-agent materialize")
    assert runs[-1].startswith("mlflow-app-agent deploy")
    # every ${{ steps.X.outputs.Y }} names an earlier step with that id
    ids = [s.get("id") for s in steps]
    for i, step in enumerate(steps):
        for ref in re.findall(r"steps\.(\w+)\.outputs", step.get("run", "")):
            assert ref in ids[:i]


def test_every_named_command_exists_with_its_options(project: Path) -> None:
    texts = [(project / ".github" / "workflows" / "deploy.yml").read_text(),
             (project / "AGENTS.md").read_text()]
    commands = [c for text in texts for c in _commands(text)]
    assert {c[1] for c in commands} >= {"validate", "materialize", "deploy", "serve"}
    for argv in commands:
        assert argv[1] in COMMANDS, argv
        help_text = CliRunner().invoke(main, [argv[1], "--help"]).output
        for option in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
            assert option in help_text, f"{' '.join(argv)}: {option} is not an option"
    for sub in ("log", "promote"):
        proc = subprocess.run([sys.executable, "register.py", sub, "--help"], cwd=project,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "--alias" in proc.stdout, proc.stderr


def test_agents_md_is_short_and_names_the_rules(project: Path) -> None:
    text = (project / "AGENTS.md").read_text()
    assert len(text.splitlines()) < 60
    for needle in ("Never put a token", "Declare every workspace resource", "pytest -q",
                   "auth=\"user\"", "agent.py", "config.yaml", "tests/"):
        assert needle in text
    for path in re.findall(r"`([\w./-]+\.(?:py|yaml|yml|md))`", text):
        assert (project / path).exists() or "*" in path, path


def _substitute(script: str, outputs: dict[str, dict[str, str]], env: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        step = re.fullmatch(r"steps\.(\w+)\.outputs\.(\w+)", expr)
        if step:
            return outputs[step.group(1)][step.group(2)]
        raise AssertionError(f"unexpected expression in a run step: {expr}")
    return _EXPR.sub(value, script)


@pytest.mark.e2e
@pytest.mark.slow
def test_the_workflow_steps_run_against_the_local_workspace(tmp_path: Path) -> None:
    from tests.apps.workspace_server import TOKEN, WorkspaceServer

    project = tmp_path / "sales-agent"
    scaffold(project, "echo")
    doc = _workflow(project)
    job = doc["jobs"]["deploy"]
    db = f"sqlite:///{tmp_path / 'ci.db'}"
    venv_bin = str(Path(sys.executable).parent)
    with WorkspaceServer() as ws:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DATABRICKS_", "MLFLOW_", "AGENT_CONFIG"))}
        env.update({
            # what the job's env gives, with local stand-ins for the secrets and stores
            "DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": TOKEN,
            "DATABRICKS_CONFIG_FILE": str(tmp_path / "no-databrickscfg"),
            "MLFLOW_TRACKING_URI": db, "MLFLOW_REGISTRY_URI": db,
            "REGISTERED_MODEL": "sales-agent", "APP_NAME": "sales-agent",
            "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
        })
        assert set(job["env"]) >= {"REGISTERED_MODEL", "APP_NAME", "MLFLOW_TRACKING_URI"}
        outputs: dict[str, dict[str, str]] = {}
        ran = []
        for step in job["steps"]:
            if "run" not in step or step["run"].startswith("pip install"):
                continue  # actions and the network-facing install
            if step["run"].startswith("pytest"):
                # the generated project's own suite: test_generated_projects.py runs exactly
                # this command on a fresh echo project; not run twice (it is the slow part)
                continue
            out_file = tmp_path / f"out-{len(ran)}"
            out_file.write_text("")
            script = _substitute(step["run"], outputs, env)
            proc = subprocess.run(["bash", "-e", "-c", script], cwd=project,
                                  env={**env, "GITHUB_OUTPUT": str(out_file)},
                                  capture_output=True, text=True, timeout=400)
            assert proc.returncode == 0, f"{step['name']}: {proc.stdout[-3000:]}" \
                                         f"{proc.stderr[-3000:]}"
            if step.get("id"):
                outputs[step["id"]] = dict(
                    line.split("=", 1) for line in out_file.read_text().splitlines() if line)
            ran.append(step["name"])
    assert ran == ["Log and register a version", "Validate the registered version",
                   "Move the champion alias", "Materialize the champion", "Deploy"]
    assert outputs["register"]["uri"] == "models:/sales-agent/1"
    app = ws.apps["sales-agent"]
    assert app["active_deployment"]["status"]["state"] == "SUCCEEDED"
    manifest = next(v for k, v in ws.deployed_files[app["active_deployment"]["deployment_id"]]
                    .items() if k == "MANIFEST.json")
    assert b'"registered_version": "1"' in manifest
