"""Which interpreter run-local builds an app's venv with: the Python the app was
materialized for, found on PATH or under $PYENV_ROOT/versions; a clear error without one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from mlflow_app_agent.apps.local.installer import app_python, requirements_key, target_minor
from mlflow_app_agent.errors import RunLocalError


def app_dir(root: Path, python: str | None, *, pyproject: str | None = None) -> Path:
    root.mkdir()
    if python is not None:
        (root / "MANIFEST.json").write_text(json.dumps(
            {"dependencies": {"installer": "uv", "target": {"python": python}}}))
    (root / "pyproject.toml").write_text(pyproject or "[project]\nname = 'x'\n")
    (root / "uv.lock").write_text("version = 1\n")
    return root


def test_the_target_comes_from_the_manifest_else_requires_python(tmp_path: Path) -> None:
    assert target_minor(app_dir(tmp_path / "a", "3.12")) == 12
    assert target_minor(app_dir(tmp_path / "b", None,
                                pyproject='[project]\nrequires-python = "==3.13.*"\n')) == 13
    assert target_minor(app_dir(tmp_path / "c", None)) is None


def test_this_interpreter_serves_its_own_minor(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UV_PYTHON", raising=False)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    python = app_python(app_dir(tmp_path / "a", here))
    assert Path(python).resolve() == Path(getattr(sys, "_base_executable",
                                                  sys.executable)).resolve()
    monkeypatch.setenv("UV_PYTHON", "/opt/chosen/python")
    assert app_python(tmp_path / "a") == "/opt/chosen/python"


def test_a_pyenv_version_is_found_and_keys_the_venv(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A 'pyenv' whose 3.9 is a real interpreter (a link to this one): found, and two
    targets never share a venv."""
    monkeypatch.delenv("UV_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    fake = tmp_path / "pyenv" / "versions" / "3.9.99" / "bin"
    fake.mkdir(parents=True)
    (fake / "python").symlink_to(sys.executable)
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    old = app_dir(tmp_path / "old", "3.9")
    assert app_python(old) == str(fake / "python")
    here = app_dir(tmp_path / "here", f"{sys.version_info[0]}.{sys.version_info[1]}")
    (here / "uv.lock").write_text((old / "uv.lock").read_text())
    (here / "pyproject.toml").write_text((old / "pyproject.toml").read_text())
    assert requirements_key(old) != requirements_key(here)


def test_no_interpreter_for_the_target_is_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UV_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    with pytest.raises(RunLocalError, match=r"materialized for Python 3\.9 and no working "
                                            r"Python 3\.9 was found .* --python 3\.1\d"):
        app_python(app_dir(tmp_path / "a", "3.9"))
