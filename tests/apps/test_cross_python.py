"""Two build machines, one lock: the same model materialized from a Python 3.12 environment
yields byte-identical install files to the 3.11 one, and that app installs (``uv sync
--frozen``) and serves on Python 3.11; one materialized with ``--python 3.12`` installs on
3.12. The other interpreters come from pyenv (found through ``pyenv root``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mlflow_app_agent.apps import materialize
from mlflow_app_agent.apps.build.materialize import BuildOptions
from mlflow_app_agent.apps.build.resolve import uv_bin
from mlflow_app_agent.apps.local.run_local import LocalApp, RunLocalOptions

from .conftest import ROOT, LoggedVersion

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INSTALL_FILES = ("pyproject.toml", "uv.lock")


def pyenv_python(minor: int) -> Path | None:
    """The newest pyenv CPython 3.<minor>, or None."""
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    try:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    found = [p / "bin" / "python" for p in Path(root, "versions").glob(f"3.{minor}.*")
             if (p / "bin" / "python").is_file()]
    return sorted(found)[-1] if found else None


def need_python(minor: int) -> Path:
    python = pyenv_python(minor)
    if python is None:
        pytest.skip(f"no pyenv CPython 3.{minor} on this machine")
    return python


def uv_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", **extra}


@pytest.fixture(scope="session")
def build_machine_312(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second 'build machine': this toolkit installed (editable) on Python 3.12."""
    python = need_python(12)
    venv = tmp_path_factory.mktemp("build-312") / "venv"
    subprocess.run([uv_bin(), "venv", "-q", "--python", str(python), str(venv)],
                   check=True, env=uv_env(), timeout=300)
    subprocess.run([uv_bin(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    "-e", str(ROOT)], check=True, env=uv_env(), timeout=900)
    return venv / "bin" / "python"


def test_a_312_build_machine_yields_the_same_lock_which_serves_on_311(
    tracking_uri: str, echo_version: LoggedVersion, build_machine_312: Path, tmp_path: Path,
) -> None:
    import openai

    reference = materialize(echo_version.uri, tmp_path / "on-311")
    out = tmp_path / "on-312"
    proc = subprocess.run(
        [str(build_machine_312), "-m", "mlflow_app_agent.cli", "materialize",
         str(reference / "model"), str(out)],
        capture_output=True, text=True, timeout=900,
        env={**uv_env(), "MLFLOW_APP_AGENT_CACHE_DIR": str(tmp_path / "cache-312")},
    )
    assert proc.returncode == 0, proc.stderr
    for name in INSTALL_FILES:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    wheels = sorted(p.name for p in (out / "wheels").iterdir())
    for name in wheels:
        assert (out / "wheels" / name).read_bytes() == (
            reference / "wheels" / name).read_bytes()

    # run-local (this venv is 3.11, the default target) installs it as Apps would
    options = RunLocalOptions(port=0, venv_root=tmp_path / "venvs", as_user="ada@example.com")
    with LocalApp(out, options) as app:
        venv = next(p for p in (tmp_path / "venvs").iterdir() if p.is_dir())  # not .lock
        version = subprocess.run([str(venv / "bin" / "python"), "-c",
                                  "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, check=True).stdout
        assert version.strip() == "(3, 11)"
        client = openai.OpenAI(base_url=app.url, api_key="unused-locally")
        answer = client.responses.create(model="agent", input="built on 3.12")
        assert answer.output_text == "built on 3.12 (for ada@example.com)"


def test_python_312_target_installs_on_312(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path,
) -> None:
    import openai

    python312 = need_python(12)
    out = materialize(echo_version.uri, tmp_path / "app",
                      options=BuildOptions(python="3.12"))
    assert 'requires-python = "==3.12.*"' in (out / "pyproject.toml").read_text()
    assert (out / "uv.lock").read_text().splitlines()[2] == 'requires-python = "==3.12.*"'
    # run-local finds a 3.12 itself (pyenv shims of unselected versions fail: it tries
    # $PYENV_ROOT/versions) and installs with uv sync --frozen
    assert "UV_PYTHON" not in os.environ
    options = RunLocalOptions(port=0, venv_root=tmp_path / "venvs", as_user="ada@example.com")
    with LocalApp(out, options) as app:
        venv = next(p for p in (tmp_path / "venvs").iterdir() if p.is_dir())
        check = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import sys, mlflow_app_agent.serve; print(sys.version_info[:2])"],
            capture_output=True, text=True, timeout=300,
        )
        assert check.returncode == 0, check.stderr
        assert check.stdout.strip() == "(3, 12)"
        client = openai.OpenAI(base_url=app.url, api_key="unused-locally")
        assert client.responses.create(model="agent", input="on 3.12").output_text == (
            "on 3.12 (for ada@example.com)")
    # and uv itself agrees the lock is current for the 3.12 target
    locked = subprocess.run([uv_bin(), "lock", "--locked", "--python",
                             str(python312)], cwd=out, capture_output=True, text=True,
                            timeout=600, env=uv_env())
    assert locked.returncode == 0, locked.stderr
