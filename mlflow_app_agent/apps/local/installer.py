"""Installing an app directory into a venv as Databricks Apps would, by its install mode:
``uv sync --frozen`` for ``pyproject.toml`` + ``uv.lock``, pip for ``requirements.txt``;
and the cache key of such a venv."""

from __future__ import annotations

import collections
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mlflow_app_agent.errors import RunLocalError
from mlflow_app_agent.model.app_dir import (
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
        digest.update(sys.version.encode())
    else:
        digest = hashlib.sha256(b"uv\0")
        for name in (PYPROJECT_FILE, UV_LOCK_FILE):
            digest.update(hashlib.sha256((app_dir / name).read_bytes()).digest())
        refs = sorted((app_dir / WHEELS_DIR).glob("*.whl"))
    for ref in refs:
        digest.update(hashlib.sha256(ref.read_bytes()).digest())
    return digest.hexdigest()[:24]


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
    code = _stream([uv, "sync", "--frozen"], cwd=app_dir, env=uv_env,
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
