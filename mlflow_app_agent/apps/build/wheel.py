"""Build this toolkit's own wheel so a materialized app installs it without the index.

The bundled wheel declares only the lean server runtime (the ``[serve]`` extra), not the
authoring dependencies a notebook install gets (:func:`app_requires`).

The wheel is written directly with :mod:`zipfile` (no build backend, no network): sorted
entries, a fixed 1980-01-01 timestamp and fixed permissions, so the same source always
yields the same bytes and two materializations of one version are byte-identical.
Built wheels are cached under the user cache dir, keyed by a hash of the package source
and its metadata, so repeated materializations only pay for hashing.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import mlflow_app_agent
from mlflow_app_agent._version import DIST_NAME, __version__

PACKAGE = "mlflow_app_agent"
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".swp")
_WHEEL_TEXT = (
    "Wheel-Version: 1.0\nGenerator: mlflow-app-agent\nRoot-Is-Purelib: true\n"
    "Tag: py3-none-any\n"
)


@dataclass(frozen=True)
class DistInfo:
    """What goes into ``*.dist-info``: requirements and entry points of the toolkit."""

    requires: list[str]
    python_requires: str | None
    summary: str | None
    entry_points: str


def cache_dir() -> Path:
    """Root of this toolkit's caches (``MLFLOW_APP_AGENT_CACHE_DIR`` overrides)."""
    env = os.environ.get("MLFLOW_APP_AGENT_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlflow-app-agent"


def package_root() -> Path:
    return Path(mlflow_app_agent.__file__).resolve().parent


def wheel_filename() -> str:
    return f"{PACKAGE}-{__version__}-py3-none-any.whl"


def _source_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in filenames:
            if name.endswith(_SKIP_SUFFIXES) or name.startswith("."):
                continue
            files.append(Path(dirpath) / name)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _setup_cfg(root: Path) -> Path | None:
    """The source checkout's setup.cfg, when the package runs from one (editable install)."""
    candidate = root.parent / "setup.cfg"
    if candidate.is_file():
        cfg = configparser.ConfigParser()
        cfg.read(candidate)
        if cfg.get("metadata", "name", fallback="") == DIST_NAME:
            return candidate
    return None


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def read_dist_info(root: Path | None = None) -> DistInfo:
    """Requirements and entry points, from setup.cfg in a checkout (the source of truth;
    installed egg-info goes stale when setup.cfg changes) or else the installed metadata."""
    root = root or package_root()
    cfg_path = _setup_cfg(root)
    if cfg_path is not None:
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(cfg_path)
        requires = _lines(cfg.get("options", "install_requires", fallback=""))
        if cfg.has_section("options.extras_require"):
            for extra, value in sorted(cfg.items("options.extras_require")):
                requires += [f'{r}; extra == "{extra}"' for r in _lines(value)]
        eps = []
        if cfg.has_section("options.entry_points"):
            for group, value in sorted(cfg.items("options.entry_points")):
                eps.append(f"[{group}]\n" + "\n".join(_lines(value)) + "\n")
        return DistInfo(
            requires=requires,
            python_requires=cfg.get("options", "python_requires", fallback=None),
            summary=cfg.get("metadata", "description", fallback=None),
            entry_points="\n".join(eps),
        )
    dist = importlib.metadata.distribution(DIST_NAME)
    return DistInfo(
        requires=list(dist.requires or []),
        python_requires=dist.metadata["Requires-Python"],
        summary=dist.metadata["Summary"],
        entry_points=dist.read_text("entry_points.txt") or "",
    )


SERVE_EXTRA = "serve"
_SERVE_MARKER = f'; extra == "{SERVE_EXTRA}"'


def app_requires(info: DistInfo) -> list[str]:
    """Requires-Dist of the wheel bundled into an app: the ``[serve]`` extra unconditionally
    (the lean server runtime), the other extras as extras, and nothing else — the default
    install's authoring dependencies (pandas, GitPython, uv) are opt-in there (``[log]``)."""
    serve = [r[: -len(_SERVE_MARKER)] for r in info.requires if r.endswith(_SERVE_MARKER)]
    if not serve:  # metadata without the split (an old install): all of it
        return list(info.requires)
    return serve + [r for r in info.requires if 'extra == "' in r and r not in
                    {s + _SERVE_MARKER for s in serve}]


def _metadata_text(info: DistInfo) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {DIST_NAME}", f"Version: {__version__}"]
    if info.summary:
        lines.append(f"Summary: {info.summary}")
    if info.python_requires:
        lines.append(f"Requires-Python: {info.python_requires}")
    requires = app_requires(info)
    extras = sorted({r.split('extra == "')[1].rstrip('"') for r in requires
                     if 'extra == "' in r})
    lines += [f"Provides-Extra: {e}" for e in extras]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n"


def source_key(root: Path | None = None) -> str:
    """A hash of everything that ends up in the wheel."""
    root = root or package_root()
    digest = hashlib.sha256(__version__.encode())
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    info = read_dist_info(root)
    digest.update(repr(info).encode())
    return digest.hexdigest()[:32]


def _record_hash(data: bytes) -> str:
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _add(zf: zipfile.ZipFile, name: str, data: bytes, records: list[str]) -> None:
    zinfo = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    zinfo.compress_type = zipfile.ZIP_DEFLATED
    zinfo.external_attr = (0o100644 & 0xFFFF) << 16
    zinfo.create_system = 3  # unix, so the mode above is honoured the same everywhere
    zf.writestr(zinfo, data, compresslevel=6)
    records.append(f"{name},{_record_hash(data)},{len(data)}")


def write_wheel(dest: Path, root: Path | None = None) -> Path:
    """Write the wheel into directory ``dest`` and return its path (deterministic bytes)."""
    root = root or package_root()
    info = read_dist_info(root)
    dist_info = f"{PACKAGE}-{__version__}.dist-info"
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / wheel_filename()
    records: list[str] = []
    with zipfile.ZipFile(target, "w") as zf:
        for path in _source_files(root):
            name = f"{PACKAGE}/{path.relative_to(root).as_posix()}"
            _add(zf, name, path.read_bytes(), records)
        _add(zf, f"{dist_info}/METADATA", _metadata_text(info).encode(), records)
        _add(zf, f"{dist_info}/WHEEL", _WHEEL_TEXT.encode(), records)
        if info.entry_points.strip():
            _add(zf, f"{dist_info}/entry_points.txt", info.entry_points.encode(), records)
        _add(zf, f"{dist_info}/top_level.txt", f"{PACKAGE}\n".encode(), records)
        records.append(f"{dist_info}/RECORD,,")
        _add(zf, f"{dist_info}/RECORD", ("\n".join(records) + "\n").encode(), [])
    return target


def build_wheel(*, use_cache: bool = True) -> Path:
    """The toolkit wheel for the running source, built once per source hash."""
    root = package_root()
    key = source_key(root)
    cached = cache_dir() / "wheels" / key / wheel_filename()
    if use_cache and cached.is_file():
        return cached
    cached.parent.parent.mkdir(parents=True, exist_ok=True)
    # build next to the cache entry, then rename: a concurrent reader never sees half a wheel
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cached.parent.parent))
    try:
        built = write_wheel(tmp, root)
        cached.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, cached)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached
