"""Installing an app directory into a venv as Databricks Apps would, by its install mode:
``uv sync --frozen`` for ``pyproject.toml`` + ``uv.lock``, pip for ``requirements.txt``;
and the cache key of such a venv."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mlflow_app_agent.errors import RunLocalError
from mlflow_app_agent.model.app_dir import (
    MANIFEST_FILE,
    PYPROJECT_FILE,
    REQUIREMENTS_FILE,
    UV_LOCK_FILE,
    WHEELS_DIR,
    install_mode,
)

Progress = Callable[[str], None]


def _local_refs(app_dir: Path, text: str) -> list[Path]:
    """Files the requirements refer to by relative path (the bundled wheel, -c files)."""
    refs = []
    for line in text.splitlines():
        token = line.split("#")[0].strip().split(" ")[-1]
        if token.startswith(("./", "model/", "wheels/")) and (app_dir / token).is_file():
            refs.append(app_dir / token)
    return refs


def target_minor(app_dir: Path) -> int | None:
    """The CPython minor the app was materialized for: the manifest's target, else the
    ``requires-python`` of its pyproject.toml; None when the directory names none."""
    try:
        manifest = json.loads((app_dir / MANIFEST_FILE).read_text())
        text = str(manifest["dependencies"]["target"]["python"])
    except (OSError, ValueError, KeyError, TypeError):
        try:
            found = re.search(r'requires-python\s*=\s*"==3\.(\d+)',
                              (app_dir / PYPROJECT_FILE).read_text())
        except OSError:
            return None
        return int(found.group(1)) if found else None
    parts = text.split(".")
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def base_python() -> str:
    # a venv made from the base interpreter, not from whatever venv runs this code
    return getattr(sys, "_base_executable", None) or sys.executable


def app_python(app_dir: Path) -> str:
    """The interpreter the app's venv is made with: one of the Python it was materialized
    for (``materialize --python``), found as materialize finds one; ``UV_PYTHON`` wins."""
    from mlflow_app_agent.apps.build.resolve import find_python

    if os.environ.get("UV_PYTHON"):
        return os.environ["UV_PYTHON"]
    minor = target_minor(app_dir)
    if minor is None or sys.version_info[1] == minor:
        return base_python()
    found = find_python([minor])
    if found is None:
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        raise RunLocalError(
            f"{app_dir} was materialized for Python 3.{minor} and no working Python 3.{minor} "
            f"was found (python3.{minor} on PATH, $PYENV_ROOT/versions); install one, set "
            f"UV_PYTHON, or materialize with --python {here}"
        )
    return found


def requirements_key(app_dir: Path) -> str:
    """Cache key of a venv: the install files, every local file they name, the interpreter
    (pip mode; in uv mode the lock names the Python)."""
    mode = install_mode(app_dir)
    if mode is None:
        raise RunLocalError(
            f"{app_dir} has neither requirements.txt nor pyproject.toml + uv.lock; "
            "materialize it first"
        )
    if mode == "pip":
        text = (app_dir / REQUIREMENTS_FILE).read_text()
        digest = hashlib.sha256(text.encode())
        refs = _local_refs(app_dir, text)
        digest.update(_interpreter_id(app_python(app_dir)).encode())
    else:
        digest = hashlib.sha256(b"uv\0" + _interpreter_id(app_python(app_dir)).encode())
        for name in (PYPROJECT_FILE, UV_LOCK_FILE):
            digest.update(hashlib.sha256((app_dir / name).read_bytes()).digest())
        refs = sorted((app_dir / WHEELS_DIR).glob("*.whl"))
    for ref in refs:
        digest.update(hashlib.sha256(ref.read_bytes()).digest())
    return digest.hexdigest()[:24]


def _interpreter_id(python: str) -> str:
    if python in (sys.executable, base_python()):
        return f"{python}\0{sys.version}"
    return f"{python}\0{Path(python).resolve()}"


def _uv_sync(app_dir: Path, venv: Path, env: dict[str, str], say: Progress,
             tail: collections.deque[str]) -> None:
    """``uv sync --frozen`` into ``venv``, exactly the lock, as Databricks Apps installs."""
    from mlflow_app_agent.apps.build.resolve import uv_bin

    try:
        uv = uv_bin()
    except Exception as exc:  # MaterializeError: uv missing
        raise RunLocalError(str(exc)) from None
    uv_env = {**env, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never",
              "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}
    say("uv sync --frozen (as Databricks Apps does for pyproject.toml + uv.lock) ...")
    # no --no-config: the app's own [tool.uv] settings (exclude-newer, ...) apply, as on Apps
    code = _stream([uv, "sync", "--frozen", "--python", app_python(app_dir)], cwd=app_dir,
                   env=uv_env,
                   say=say, prefix="  uv: ", tail=tail)
    if code:
        shutil.rmtree(venv, ignore_errors=True)
        last = [line for line in tail if line.strip()][-5:]
        raise RunLocalError("uv sync --frozen failed; last lines:\n  " + "\n  ".join(last))


def _stream(cmd: list[str], *, cwd: Path, env: dict[str, str], say: Progress, prefix: str,
            tail: collections.deque[str]) -> int:
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            say(f"{prefix}{line}")
        return proc.wait()
    except BaseException:  # Ctrl-C / SIGTERM: never leave pip running behind us
        proc.kill()
        proc.wait()
        raise
