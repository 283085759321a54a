"""Resolve an app's dependencies for the Databricks Apps runtime with a pinned ``uv``.

Nothing here looks at what is installed on the build machine: the resolution is for the
*target* (Linux x86_64 glibc 2.35 = Ubuntu 22.04, CPython 3.11 by default), against the
package index as it was at ``exclude_newer`` (an RFC 3339 instant recorded in the
manifest), so the same model yields the same lock on any build machine and any day.

- uv mode: ``pyproject.toml`` + ``uv.lock`` (``uv lock``; Apps installs them with uv on the
  Python that ``requires-python`` names, without the preinstalled libraries).
- pip mode: a fully pinned ``requirements.txt`` (``uv pip compile --python-version
  --python-platform``; Apps pip-installs it on Python 3.11 over preinstalled libraries).

``uv lock`` needs an interpreter inside ``requires-python`` although a universal lock does
not depend on it. It locks with ``requires-python = ">=3.X"`` narrowed to the target by
``[tool.uv] environments``, using this interpreter when it is new enough, then states the
target exactly (``==3.X.*``) in both files; ``uv lock --locked`` on the target accepts it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mlflow_app_agent.errors import MaterializeError
from mlflow_app_agent.model.app_dir import PYPROJECT_FILE, UV_LOCK_FILE

DEFAULT_PYTHON = "3.11"
DEFAULT_PLATFORM = "x86_64-manylinux_2_35"
DEFAULT_TIMEOUT = 300.0
APP_PROJECT_NAME = "mlflow-agent-app"
_MIN_MINOR = 11  # this toolkit's own floor (python_requires)
_MAX_MINOR = 14
# platform -> (uv --python-platform, platform_machine marker)
PLATFORMS = {
    "x86_64-manylinux_2_35": ("x86_64-manylinux_2_35", "x86_64"),
    "x86_64-manylinux_2_28": ("x86_64-manylinux_2_28", "x86_64"),
    "x86_64-manylinux_2_17": ("x86_64-manylinux_2_17", "x86_64"),
    "aarch64-manylinux_2_35": ("aarch64-manylinux_2_35", "aarch64"),
}


@dataclass(frozen=True)
class Target:
    """The runtime an app directory is resolved for."""

    python: str = DEFAULT_PYTHON
    platform: str = DEFAULT_PLATFORM

    @property
    def minor(self) -> int:
        return int(self.python.split(".")[1])

    @property
    def requires_python(self) -> str:
        return f"=={self.python}.*"

    def marker(self) -> str:
        machine = PLATFORMS[self.platform][1]
        return (f"python_full_version >= '{self.python}' and python_full_version < "
                f"'3.{self.minor + 1}' and sys_platform == 'linux' and "
                f"platform_machine == '{machine}'")

    def describe(self) -> str:
        return f"Python {self.python} on {self.platform}"

    def to_dict(self) -> dict[str, str]:
        return {"python": self.python, "platform": self.platform}


def parse_target(python: str | None = None, platform: str | None = None) -> Target:
    """A checked :class:`Target`; a one-line :class:`MaterializeError` otherwise."""
    python = (python or DEFAULT_PYTHON).strip()
    platform = (platform or DEFAULT_PLATFORM).strip()
    match = re.fullmatch(r"3\.(\d+)", python)
    if not match or not _MIN_MINOR <= int(match.group(1)) <= _MAX_MINOR:
        raise MaterializeError(
            f"--python {python!r}: the app runs mlflow-app-agent, which needs CPython "
            f"3.{_MIN_MINOR}-3.{_MAX_MINOR}; give a version like 3.11"
        )
    if platform not in PLATFORMS:
        raise MaterializeError(
            f"--platform {platform!r} is not a known target; choose one of "
            f"{', '.join(sorted(PLATFORMS))}"
        )
    return Target(python, platform)


def parse_exclude_newer(value: str) -> str:
    """``YYYY-MM-DD`` or an ISO 8601 instant -> RFC 3339 UTC, second precision."""
    text = value.strip().replace(" ", "T")
    try:
        when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MaterializeError(
            f"--exclude-newer {value!r} is not a date or an ISO 8601 time "
            "(e.g. 2026-11-01 or 2026-11-01T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    when = when.astimezone(_dt.UTC).replace(microsecond=0)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def uv_bin() -> str:
    """The pinned uv of the ``[build]`` extra, through its Python entry point."""
    try:
        import uv
    except ImportError:
        raise MaterializeError(
            "materialize resolves with uv, which is not installed here; "
            "pip install 'mlflow-app-agent[build]'"
        ) from None
    return str(uv.find_uv_bin())


def uv_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("uv")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_index_url(index_url: str | None) -> None:
    if index_url and re.match(r"^[a-z+]+://[^/@]*@", index_url):
        raise MaterializeError(
            "--index-url has credentials in it; they would be recorded in the lock. Set "
            "UV_INDEX_URL in the environment instead"
        )


def _uv_env(timeout: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({
        "UV_PYTHON_DOWNLOADS": "never",  # no interpreter downloads: the index only
        "UV_HTTP_TIMEOUT": str(max(1, int(timeout))),
        "UV_NO_PROGRESS": "1",
        "NO_COLOR": "1",
    })
    return env


def _explain(stderr: str) -> str:
    """uv's message as one line (its tree drawing dropped)."""
    lines = [re.sub(r"^[\s│├└╰─▶]+", "", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith(("Using CPython", "Resolved"))]
    lines = [re.sub(r"^(error|hint): ", "", ln) for ln in lines]
    return " ".join(lines)[:1500] or "uv failed without a message"


def run_uv(args: list[str], *, cwd: Path, target: Target, timeout: float) -> str:
    """Run uv; raise a :class:`MaterializeError` naming the target on any failure."""
    try:
        proc = subprocess.run(
            [uv_bin(), *args], cwd=cwd, env=_uv_env(timeout), capture_output=True,
            text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise MaterializeError(
            f"resolving the app's dependencies for {target.describe()} did not finish "
            f"within --timeout {timeout:g} s (is the package index reachable?)"
        ) from None
    if proc.returncode:
        why = _explain(proc.stderr)
        if re.search(r"(Failed to fetch|error sending request|dns error|Connection refused|"
                     r"operation timed out|connect error)", proc.stderr, re.I):
            raise MaterializeError(
                f"the package index is unreachable while resolving for {target.describe()}: "
                f"{why}"
            )
        raise MaterializeError(
            f"the app's dependencies cannot be resolved for {target.describe()}: {why}"
        )
    return proc.stdout


def _cached(key_parts: list[bytes], produce: Callable[[], str]) -> str:
    """``produce()``, remembered per inputs: with a fixed ``exclude_newer`` and a pinned uv
    the same inputs resolve the same, so a repeated materialize skips the index."""
    from mlflow_app_agent.apps.build.wheel import cache_dir

    digest = hashlib.sha256(uv_version().encode())
    for part in key_parts:
        digest.update(hashlib.sha256(part).digest())
    path = cache_dir() / "resolved" / digest.hexdigest()[:32]
    if path.is_file():
        return path.read_text()
    text = produce()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return text


def _local_files(app_dir: Path, paths: list[str]) -> list[bytes]:
    out = []
    for rel in paths:
        path = app_dir / rel
        out.append(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return out


def _toml_list(items: list[str]) -> str:
    if not items:
        return "[]"
    return "[\n" + "".join(f"    {json.dumps(i)},\n" for i in items) + "]"


def render_pyproject(dependencies: list[str], sources: dict[str, str], target: Target,
                     exclude_newer: str, *, requires_python: str | None = None) -> str:
    """The app's ``pyproject.toml``: a virtual project (nothing to build) for uv."""
    marker = target.marker()
    out = [
        "# Generated by mlflow-app-agent materialize; Databricks Apps installs it with uv",
        "# (uv.lock, no requirements.txt). Do not edit: MANIFEST.json holds its sha256.",
        "[project]",
        f"name = {json.dumps(APP_PROJECT_NAME)}",
        'version = "0.0.0"',
        f"requires-python = {json.dumps(requires_python or target.requires_python)}",
        f"dependencies = {_toml_list(dependencies)}",
        "",
        "[tool.uv]",
        "package = false",
        f"exclude-newer = {json.dumps(exclude_newer)}",
        f"environments = [{json.dumps(marker)}]",
        f"required-environments = [{json.dumps(marker)}]",
    ]
    if sources:
        out += ["", "[tool.uv.sources]"]
        out += [f"{name} = {{ path = {json.dumps(path)} }}" for name, path in sorted(sources.items())]
    return "\n".join(out) + "\n"


def _works(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import sys"], capture_output=True,
                              timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def find_python(minors: Sequence[int]) -> str | None:
    """A working CPython of one of ``minors`` (in that order of preference): this one, a
    ``python3.N`` on PATH (pyenv shims of unselected versions fail, so each is tried), or one
    under ``$PYENV_ROOT/versions``."""
    if sys.version_info[1] in minors and sys.version_info[0] == 3:
        return sys.executable
    candidates = [found for m in minors if (found := shutil.which(f"python3.{m}"))]
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    for m in minors:
        candidates += sorted(str(p / "bin" / "python") for p in pyenv.glob(f"3.{m}.*"))
    return next((c for c in candidates if _works(c)), None)


def lock_interpreter(target: Target) -> str | None:
    """An interpreter inside ``uv lock``'s range (``>=3.X``); any will do: the lock is
    universal."""
    if sys.version_info[:2] >= (3, target.minor):
        return sys.executable
    return find_python(range(target.minor, _MAX_MINOR + 1))


def _lock_python(target: Target) -> list[str]:
    python = lock_interpreter(target)
    if python is None:
        raise MaterializeError(
            f"uv lock needs a Python >= {target.python} on this machine to lock for "
            f"{target.describe()}; install one or use --installer pip"
        )
    return ["--python", python]


def lock(app_dir: Path, dependencies: list[str], sources: dict[str, str], target: Target,
         exclude_newer: str, *, timeout: float = DEFAULT_TIMEOUT,
         index_url: str | None = None) -> None:
    """Write ``pyproject.toml`` and ``uv.lock`` into ``app_dir`` (uv mode)."""
    _check_index_url(index_url)
    relaxed = f">={target.python}"
    pyproject = app_dir / PYPROJECT_FILE
    loose = render_pyproject(dependencies, sources, target, exclude_newer,
                             requires_python=relaxed)
    key = [b"lock", loose.encode(), (index_url or "").encode(),
           *_local_files(app_dir, list(sources.values()))]
    pyproject.write_text(loose)
    text = _cached(key, lambda: _run_lock(app_dir, target, exclude_newer, timeout, index_url))
    (app_dir / UV_LOCK_FILE).write_text(text)
    pyproject.write_text(render_pyproject(dependencies, sources, target, exclude_newer))


def _run_lock(app_dir: Path, target: Target, exclude_newer: str, timeout: float,
              index_url: str | None) -> str:
    relaxed = f">={target.python}"
    args = ["lock", "--no-config", "--exclude-newer", exclude_newer, *_lock_python(target)]
    if index_url:
        args += ["--default-index", index_url]
    try:
        run_uv(args, cwd=app_dir, target=target, timeout=timeout)
    except MaterializeError as exc:
        if "No interpreter found" in exc.message:
            raise MaterializeError(
                f"uv lock needs a Python >= {target.python} on this machine to lock for "
                f"{target.describe()}; install one or use --installer pip"
            ) from None
        raise
    lock_file = app_dir / UV_LOCK_FILE
    text = lock_file.read_text()
    wanted = f"requires-python = {json.dumps(relaxed)}"
    if wanted not in text.splitlines():
        raise MaterializeError(f"uv wrote an unexpected {UV_LOCK_FILE} (no {wanted!r} line)")
    exact = f"requires-python = {json.dumps(target.requires_python)}"
    lock_file.unlink()
    return text.replace(wanted + "\n", exact + "\n", 1)


def compile_requirements(app_dir: Path, lines: list[str], target: Target, exclude_newer: str,
                         *, timeout: float = DEFAULT_TIMEOUT,
                         index_url: str | None = None) -> str:
    """The pinned closure of ``lines`` for the target, as requirements.txt text (pip mode).
    Relative paths in ``lines`` are relative to ``app_dir`` and stay relative."""
    _check_index_url(index_url)
    local = [ln.split(" ", 1)[-1].removeprefix("./") for ln in lines
             if ln.startswith(("./", "-c ", "-r ", "--constraint ", "--requirement "))]
    key = [b"compile", json.dumps([lines, target.to_dict(), exclude_newer, index_url]).encode(),
           *_local_files(app_dir, local)]
    return _cached(key, lambda: _run_compile(app_dir, lines, target, exclude_newer, timeout,
                                             index_url))


def _run_compile(app_dir: Path, lines: list[str], target: Target, exclude_newer: str,
                 timeout: float, index_url: str | None) -> str:
    src = app_dir / ".requirements.in"
    src.write_text("\n".join(lines) + "\n")
    args = ["pip", "compile", "--no-config", src.name, "--python-version", target.python,
            "--python-platform", PLATFORMS[target.platform][0], "--exclude-newer",
            exclude_newer, "--no-header", "--quiet"]
    if index_url:
        args += ["--index-url", index_url]
    try:
        out = run_uv(args, cwd=app_dir, target=target, timeout=timeout)
    finally:
        src.unlink(missing_ok=True)
    return out.replace(f"-r {src.name}", "the app").replace(f"# via {src.name}", "# via the app")
