"""Upload an Apps source directory to a workspace folder, verbatim, and check it landed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from mlflow_app_agent.apps.workspace.sdk_calls import calling
from mlflow_app_agent.errors import DeployError
from mlflow_app_agent.model.app_dir import APP_YAML_NAMES, MAX_FILE_BYTES

_SKIP_DIRS = {"__pycache__", ".git", ".venv"}

Progress = Callable[[str], None]


def collect_files(src: Path) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for root, dirs, names in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            if name.endswith(".pyc"):
                continue
            path = Path(root) / name
            files.append((path.relative_to(src).as_posix(), path))
    if not files:
        raise DeployError(f"{src} is empty: nothing to deploy")
    too_big = [f"{rel} ({p.stat().st_size / 2**20:.1f} MiB)" for rel, p in files
               if p.stat().st_size > MAX_FILE_BYTES]
    if too_big:
        raise DeployError("Databricks Apps accepts files up to 10 MiB; too big: "
                          + ", ".join(too_big))
    if not any(rel in APP_YAML_NAMES for rel, _ in files):
        raise DeployError(f"{src} has no app.yaml: not an Apps source directory "
                          "(run `mlflow-app-agent materialize` first)")
    return files


def content_hash(files: list[tuple[str, Path]]) -> str:
    digest = hashlib.sha256()
    for rel, path in files:
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _canon(path: str) -> str:
    return path[len("/Workspace"):] if path.startswith("/Workspace/") else path


def upload_dir(w: Any, folder: str, files: list[tuple[str, Path]], say: Progress) -> None:
    """Upload every file verbatim (RAW keeps ``.py`` files as files, not notebooks), then list
    the folder back and check each landed as a FILE; on any failure remove the folder."""
    from databricks.sdk.service.workspace import ImportFormat, ObjectType

    need = f"CAN_MANAGE on the workspace folder {folder.rsplit('/', 2)[0]}"
    total = sum(p.stat().st_size for _, p in files)
    size = f"{total / 2**20:.1f} MiB" if total >= 2**20 else f"{total / 1024:.1f} KiB"
    say(f"uploading {len(files)} files ({size}) to {folder}")
    try:
        dirs = sorted({folder} | {f"{folder}/{rel.rsplit('/', 1)[0]}" for rel, _ in files
                                  if "/" in rel})
        for d in dirs:
            with calling(f"workspace.mkdirs({d})", need, " Nothing was deployed."):
                w.workspace.mkdirs(d)
        done = 0
        step = max(1, -(-len(files) // 4))  # about four progress lines

        def put(rel: str, path: Path) -> str:
            with calling(f"workspace.upload({folder}/{rel})", need, " Nothing was deployed."):
                w.workspace.upload(f"{folder}/{rel}", path.read_bytes(),
                                   format=ImportFormat.RAW, overwrite=True)
            return rel

        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(put, rel, path) for rel, path in files]
            try:
                for future in as_completed(futures):
                    future.result()
                    done += 1
                    if done % step == 0 or done == len(files):
                        say(f"  uploaded {done}/{len(files)}")
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        landed: dict[str, str] = {}
        with calling(f"workspace.list({folder})", need, " Nothing was deployed."):
            for info in w.workspace.list(folder, recursive=True):
                kind = info.object_type.value if info.object_type else "?"
                landed[_canon(info.path or "")] = kind
        base = _canon(folder)
        wrong = [f"{rel} ({landed.get(f'{base}/{rel}', 'missing')})" for rel, _ in files
                 if landed.get(f"{base}/{rel}") != ObjectType.FILE.value]
        if wrong:
            raise DeployError("the upload did not land as plain workspace files: "
                              + ", ".join(wrong) + ". Nothing was deployed.")
    except BaseException:
        try:
            w.workspace.delete(folder, recursive=True)
        except Exception:  # best effort: the folder is content-addressed and unused
            pass
        raise
