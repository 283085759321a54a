"""``MANIFEST.json``: where an app directory came from and the sha256 of every file in it.

``verify`` recomputes the hashes and names each changed, missing or extra file, so what
is deployed is provably what was materialized. The manifest is written with sorted keys
and no timestamps: the same model version always yields the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mlflow_app_agent.errors import ManifestMismatchError
from mlflow_app_agent.model.app_dir import MANIFEST_FILE, install_mode

MANIFEST_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path) -> list[str]:
    """Relative POSIX paths of every file under ``root`` except the manifest, sorted.
    Symlinks are listed too (``verify`` rejects them: an app dir holds only real files)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            rel = (base / name).relative_to(root).as_posix()
            if rel != MANIFEST_FILE:
                out.append(rel)
    return sorted(out)


def file_entries(root: Path) -> dict[str, dict[str, Any]]:
    return {
        rel: {"sha256": sha256_file(root / rel), "size": (root / rel).stat().st_size}
        for rel in list_files(root)
    }


def render_manifest(root: Path, meta: dict[str, Any]) -> str:
    doc = {**meta, "manifest_version": MANIFEST_VERSION, "files": file_entries(root)}
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_manifest(root: Path, meta: dict[str, Any]) -> Path:
    path = root / MANIFEST_FILE
    path.write_text(render_manifest(root, meta), encoding="utf-8")
    return path


def read_manifest(app_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(app_dir) / MANIFEST_FILE
    if not path.is_file():
        raise ManifestMismatchError(
            f"{app_dir} has no {MANIFEST_FILE}: not a materialized app directory",
            problems=[f"missing: {MANIFEST_FILE}"],
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestMismatchError(
            f"{path} is not valid JSON ({exc})", problems=[f"changed: {MANIFEST_FILE}"]
        ) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise ManifestMismatchError(
            f"{path} has no 'files' table", problems=[f"changed: {MANIFEST_FILE}"]
        )
    return doc


def _mode_problem(root: Path, manifest: dict[str, Any], expected: str | None) -> str | None:
    """How Apps would install the dir vs the manifest's (and the caller's) installer."""
    recorded = (manifest.get("dependencies") or {}).get("installer")
    actual = install_mode(root)
    names = {"pip": "pip mode (requirements.txt)", "uv": "uv mode (pyproject.toml + uv.lock)",
             None: "no install files"}
    if expected is not None and actual != expected:
        return (f"mode: {root} is a {names.get(actual, actual)} app directory, not "
                f"{names[expected]}")
    if recorded is not None and actual != recorded:
        return (f"mode: materialized for {names.get(recorded, recorded)}, but Apps would "
                f"install it as {names.get(actual, actual)}")
    return None


def verify(app_dir: str | os.PathLike[str], *, raise_on_mismatch: bool = True,
           installer: str | None = None) -> list[str]:
    """Check ``app_dir`` against its ``MANIFEST.json``.

    Returns the problems, one per file (``changed: path``, ``missing: path``,
    ``extra: path``); empty when the directory is intact. With ``raise_on_mismatch`` (the
    default) a non-empty result raises :class:`ManifestMismatchError` naming the files.
    ``installer`` (``"uv"``/``"pip"``): also require that install mode; and the mode the
    files imply must be the one the manifest recorded (a ``requirements.txt`` added to a
    uv-mode dir would make Apps install it with pip).
    """
    root = Path(app_dir)
    if not root.is_dir():
        raise ManifestMismatchError(f"{app_dir} is not a directory", problems=[])
    manifest = read_manifest(root)
    mode = _mode_problem(root, manifest, installer)
    if mode is not None and installer is not None and raise_on_mismatch:
        raise ManifestMismatchError(mode.removeprefix("mode: "), problems=[mode])
    expected: dict[str, Any] = manifest["files"]
    problems = [mode] if mode else []
    present = set(list_files(root))
    for rel in sorted(set(expected) | present):
        path = root / rel
        if rel not in present:
            problems.append(f"missing: {rel}")
        elif rel not in expected:
            problems.append(f"extra: {rel}")
        elif path.is_symlink():
            problems.append(f"changed: {rel} (is a symlink)")
        else:
            want = expected[rel] if isinstance(expected[rel], dict) else {}
            if path.stat().st_size != want.get("size") or sha256_file(path) != want.get(
                "sha256"
            ):
                problems.append(f"changed: {rel}")
    if problems and raise_on_mismatch:
        shown = "; ".join(problems[:10]) + (
            f"; ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        )
        raise ManifestMismatchError(
            f"{app_dir} does not match its {MANIFEST_FILE}: {shown}", problems=problems
        )
    return problems
