"""The scaffolder and the ``init`` command (no subprocesses; fast)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_app_agent._version import __version__
from mlflow_app_agent.cli import main
from mlflow_app_agent.errors import TargetExistsError, TemplateError
from mlflow_app_agent.templates import list_templates, scaffold
from mlflow_app_agent.templates.scaffolder import FILES_ROOT, default_name, pin

EXPECTED = {
    "README.md",
    "agent.py",
    "config.yaml",
    "notebook.ipynb",
    "requirements.txt",
    "requirements-dev.txt",
    "pytest.ini",
    "ruff.toml",
    ".gitignore",
    "tests/conftest.py",
    "tests/test_agent.py",
    # every template: CI and the assistant guide (tests/templates/test_ci_files.py)
    ".github/workflows/deploy.yml",
    "AGENTS.md",
    "register.py",
}


def test_templates_are_listed() -> None:
    templates = list_templates()
    assert {"echo", "tool-calling"} <= set(templates)
    assert all(t.description for t in templates.values())


@pytest.mark.parametrize("template", ["echo", "tool-calling"])
def test_scaffold_writes_a_complete_project(tmp_path: Path, template: str) -> None:
    dest = tmp_path / "my-agent"
    created = scaffold(dest, template)
    names = {p.as_posix() for p in created}
    assert EXPECTED <= names
    assert names == {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    for path in dest.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "__MAA_" not in text, path
            assert not path.name.endswith((".tmpl", ".in")), path
    agent_py = (dest / "agent.py").read_text()
    assert 'Agent(\n    "my-agent",' in agent_py
    assert "@agent.invoke_method" in agent_py and "@agent.stream_method" in agent_py
    compile(agent_py, "agent.py", "exec")
    nb = json.loads((dest / "notebook.ipynb").read_text())
    assert nb["nbformat"] == 4
    assert any("log_model(" in "".join(c["source"]) for c in nb["cells"])
    assert stat.S_IMODE(dest.stat().st_mode) & 0o755 == 0o755 or os.name != "posix"


@pytest.mark.parametrize("template", ["echo", "tool-calling"])
def test_requirements_are_pinned(tmp_path: Path, template: str) -> None:
    dest = tmp_path / "p"
    scaffold(dest, template)
    lines = [
        ln for ln in (dest / "requirements.txt").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert f"mlflow-app-agent=={__version__}" in lines
    assert all("==" in ln for ln in lines), lines
    dev = (dest / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev
    assert any(ln.startswith("pytest==") for ln in dev)


def test_pin() -> None:
    import importlib.metadata

    assert pin("pydantic") == f"pydantic=={importlib.metadata.version('pydantic')}"
    assert pin("pydantic>=2") == "pydantic>=2"
    assert pin("surely-not-an-installed-package-xyz") == "surely-not-an-installed-package-xyz"


def test_name_option_and_default_name(tmp_path: Path) -> None:
    scaffold(tmp_path / "a", "echo", name="support_bot")
    assert 'Agent(\n    "support_bot",' in (tmp_path / "a" / "agent.py").read_text()
    assert default_name(tmp_path / "My Agent!") == "My-Agent"
    assert default_name(tmp_path / "123") == "agent-123"


def test_unknown_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="unknown template 'nope'; choose one of: echo"):
        scaffold(tmp_path / "x", "nope")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x" * 64, "é"])
def test_bad_name(tmp_path: Path, bad: str) -> None:
    with pytest.raises(TemplateError, match="agent name"):
        scaffold(tmp_path / "x", "echo", name=bad)


def test_refuses_non_empty_target_and_leaves_it_alone(tmp_path: Path) -> None:
    dest = tmp_path / "existing"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(TargetExistsError):
        scaffold(dest, "echo")
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(TargetExistsError):
        scaffold(afile, "echo")


def test_empty_target_dir_is_used(tmp_path: Path) -> None:
    dest = tmp_path / "empty"
    dest.mkdir()
    scaffold(dest, "echo")
    assert (dest / "agent.py").is_file()


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow_app_agent.templates import scaffolder as mod

    def boom(*_a: object) -> list[Path]:
        raise OSError("disk full")

    monkeypatch.setattr(mod, "_write_requirements", boom)
    with pytest.raises(OSError, match="disk full"):
        scaffold(tmp_path / "p", "echo")
    assert list(tmp_path.iterdir()) == []


def test_unknown_placeholder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow_app_agent.templates import scaffolder as mod

    root = tmp_path / "files"
    (root / "broken").mkdir(parents=True)
    (root / "broken" / "template.json").write_text('{"description": "x"}')
    (root / "broken" / "a.py.tmpl").write_text("x = '__MAA_NOPE__'\n")
    monkeypatch.setattr(mod, "FILES_ROOT", root)
    with pytest.raises(TemplateError, match="__MAA_NOPE__"):
        scaffold(tmp_path / "out", "broken")
    assert not (tmp_path / "out").exists()


def test_tool_caches_in_the_template_tree_are_not_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_app_agent.templates import scaffolder as mod

    root = tmp_path / "files"
    (root / "t" / ".ruff_cache").mkdir(parents=True)
    (root / "t" / ".ruff_cache" / "x").write_text("cache")
    (root / "t" / ".DS_Store").write_text("junk")
    (root / "t" / "template.json").write_text('{"description": "x"}')
    (root / "t" / "dot-gitignore").write_text("*.pyc\n")
    monkeypatch.setattr(mod, "FILES_ROOT", root)
    assert scaffold(tmp_path / "out", "t") == [Path(".gitignore")]


def test_template_sources_are_not_python_modules() -> None:
    # .py sources are .py.tmpl, so ruff/mypy/pytest of this repo never pick them up.
    assert not list(FILES_ROOT.rglob("*.py"))


# --- CLI -------------------------------------------------------------------------------------


def test_cli_init(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["init", str(tmp_path / "bot"), "--template", "tool-calling", "--name", "bot"]
    )
    assert result.exit_code == 0, result.output
    assert "Created tool-calling agent 'bot'" in result.output
    assert (tmp_path / "bot" / "agent.py").is_file()


def test_cli_list() -> None:
    result = CliRunner().invoke(main, ["init", "--list"])
    assert result.exit_code == 0
    assert "echo" in result.output and "tool-calling" in result.output


def test_cli_errors_are_readable(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["init", str(tmp_path / "x"), "--template", "nope"])
    assert result.exit_code != 0
    assert "Error: unknown template 'nope'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(main, ["init"])
    assert result.exit_code != 0 and "DIRECTORY" in result.output


@pytest.mark.e2e
def test_templates_ship_in_the_wheel(tmp_path: Path) -> None:
    """The wheel materialized apps install carries the template tree (nested files too), and
    `init` works from it alone."""
    import subprocess
    import sys
    import zipfile

    from mlflow_app_agent.apps.build.wheel import write_wheel

    wheel = write_wheel(tmp_path / "dist")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    root = "mlflow_app_agent/templates/project-files/"
    shipped = {n[len(root):] for n in names if n.startswith(root)}
    rels = [p.relative_to(FILES_ROOT) for p in FILES_ROOT.rglob("*") if p.is_file()]
    on_disk = {
        r.as_posix() for r in rels
        if not any(part.startswith(".") or part == "__pycache__" for part in r.parts)
    }
    assert shipped == on_disk
    code = (
        "import sys, mlflow_app_agent.templates as t; "
        "assert t.__file__.startswith(sys.argv[1]), t.__file__; "
        "t.scaffold(sys.argv[2], 'tool-calling')"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(site), str(tmp_path / "p")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "p" / "tests" / "fake_databricks.py").is_file()


@pytest.mark.parametrize("template", ["echo", "tool-calling"])
def test_readme_has_no_placeholder_links(tmp_path: Path, template: str) -> None:
    import re

    dest = tmp_path / "p"
    scaffold(dest, template)
    for target in re.findall(r"\]\(([^)]+)\)", (dest / "README.md").read_text()):
        # a link must point somewhere: not a bare host like https://github.com/
        assert not re.fullmatch(r"https?://[^/]+/?", target), target
