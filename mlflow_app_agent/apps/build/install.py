"""The install files of an app directory: uv mode (``pyproject.toml`` + ``uv.lock``, the
default) or pip mode (``requirements.txt``), resolved for the target by ``resolve.py``,
and the manifest's record of how (installer, target, index snapshot, resolver, and
whether ``mlflow`` was swapped for ``mlflow-skinny``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow_app_agent.apps.build import requirements, resolve
from mlflow_app_agent.errors import MaterializeError
from mlflow_app_agent.model.app_dir import (
    MODEL_DIR,
    PYPROJECT_FILE,
    REQUIREMENTS_FILE,
    UV_LOCK_FILE,
)
from mlflow_app_agent.model.files import read_mlmodel

Progress = Callable[[str], None]
INSTALLERS = ("uv", "pip")



@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """How the app's dependencies are resolved and installed (see ``resolve.py``)."""

    installer: str = "uv"
    python: str | None = None  # target CPython, default 3.11
    platform: str | None = None  # default x86_64-manylinux_2_35 (Ubuntu 22.04)
    exclude_newer: str | None = None  # default: the model's creation time
    timeout: float = resolve.DEFAULT_TIMEOUT
    index_url: str | None = None
    full_mlflow: bool | None = None  # None: as logged (log_model(full_mlflow=...))


def _logged_full_mlflow(model_dir: Path) -> bool:
    conf = read_mlmodel(model_dir).agent_conf or {}
    return bool(conf.get("full_mlflow"))


def _exclude_newer(model_dir: Path, given: str | None) -> str:
    """The index snapshot to resolve against: given, or the model's creation time (what
    existed when it was logged), so a later upload never changes an old version's app."""
    if given:
        return resolve.parse_exclude_newer(given)
    created = read_mlmodel(model_dir).doc.get("utc_time_created")
    if not created:
        raise MaterializeError(
            "the model's MLmodel has no utc_time_created; pass --exclude-newer DATE to fix "
            "the package index snapshot the app is resolved against"
        )
    return resolve.parse_exclude_newer(str(created))


def write_install_files(tmp: Path, wheel_rel: str, opts: BuildOptions,
                        target: resolve.Target, say: Progress) -> tuple[list[str], dict[str, Any]]:
    """Resolve and write the install files; return (their names, the manifest record)."""
    model_dir = tmp / MODEL_DIR
    exclude_newer = _exclude_newer(model_dir, opts.exclude_newer)
    model = requirements.read_model_requirements(
        model_dir, model_prefix=MODEL_DIR, full_mlflow=opts.full_mlflow,
        logged_full_mlflow=_logged_full_mlflow(model_dir),
    )
    say(f"Resolving dependencies with uv {resolve.uv_version()} for {target.describe()} "
        f"(index as of {exclude_newer}, {opts.installer} mode) ...")
    if opts.installer == "uv":
        deps, sources = requirements.uv_roots(model, wheel_rel)
        resolve.lock(tmp, deps, sources, target, exclude_newer, timeout=opts.timeout,
                     index_url=opts.index_url)
        files = [PYPROJECT_FILE, UV_LOCK_FILE]
    else:
        pinned = resolve.compile_requirements(
            tmp, requirements.pip_roots(model, wheel_rel), target, exclude_newer,
            timeout=opts.timeout, index_url=opts.index_url,
        )
        (tmp / REQUIREMENTS_FILE).write_text(
            requirements.header(target.describe(), exclude_newer) + pinned
        )
        files = [REQUIREMENTS_FILE]
    record = {
        "installer": opts.installer,
        "target": target.to_dict(),
        "exclude_newer": exclude_newer,
        "resolver": f"uv {resolve.uv_version()}",
        "mlflow": model.mlflow,
    }
    return files, record
