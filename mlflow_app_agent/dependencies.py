"""Find local modules an agent imports that would be missing where the model is loaded.

A module is "local" when it is importable here only because of the working directory or
``sys.path`` tweaks: not the standard library, not an installed distribution, not this
toolkit, and not inside the logged ``code_paths``. Such a module is reported at log time
with :class:`MissingDependencyError`, instead of failing when the app starts.
"""

from __future__ import annotations

import ast
import importlib.util
import pickletools
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from mlflow_app_agent.errors import MissingDependencyError


def imported_modules_of_source(source: str) -> set[str]:
    """Top-level module names a Python file imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imported_modules_of_pickle(data: bytes) -> set[str]:
    """Top-level module names a (cloud)pickle refers to by name.

    Covers ``GLOBAL``/``STACK_GLOBAL`` references and cloudpickle's ``subimport('mod')``
    for modules a pickled-by-value function uses as globals.
    """
    names: set[str] = set()
    recent: list[str] = []  # the last string pushes, for STACK_GLOBAL
    expect_subimport_arg = False
    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name == "GLOBAL" and isinstance(arg, str):
            module, _, qualname = arg.partition(" ")
            names.add(module.split(".")[0])
            expect_subimport_arg = qualname in ("subimport", "dynamic_subimport")
        elif opcode.name == "STACK_GLOBAL" and len(recent) >= 2:
            module, qualname = recent[-2], recent[-1]
            names.add(module.split(".")[0])
            expect_subimport_arg = qualname in ("subimport", "dynamic_subimport")
        elif isinstance(arg, str) and "UNICODE" in opcode.name:
            if expect_subimport_arg:
                names.add(arg.split(".")[0])
                expect_subimport_arg = False
            recent = (recent + [arg])[-2:]
    return {n for n in names if n.isidentifier()}


def _is_provided(name: str, code_dirs: list[Path]) -> bool:
    if name in sys.builtin_module_names or name in sys.stdlib_module_names:
        return True
    if name == "__main__":
        return True
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        # Not importable here at all: requirements inference/pip will say so; we only
        # catch modules that work here by accident.
        return True
    origin = spec.origin or (next(iter(spec.submodule_search_locations or []), None))
    if origin in (None, "built-in", "frozen"):
        return True
    path = Path(origin).resolve()
    for prefix in _installed_prefixes():
        if _is_under(path, prefix):
            return True
    if _is_under(path, Path(__file__).resolve().parent):
        return True
    return any(_is_under(path, d) for d in code_dirs)


def _installed_prefixes() -> list[Path]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    prefixes = {Path(paths[k]).resolve() for k in keys if k in paths}
    for entry in sys.path:
        if "site-packages" in entry or "dist-packages" in entry:
            prefixes.add(Path(entry).resolve())
    return sorted(prefixes)


def _is_under(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
    except ValueError:
        return False
    return True


def code_path_roots(code_paths: Iterable[str | Path] | None) -> list[Path]:
    """Directories that the logged code paths make importable."""
    roots = []
    for p in code_paths or []:
        path = Path(p).resolve()
        roots.append(path)  # a package dir or a file is itself provided
    return roots


def check_local_modules(modules: Iterable[str], code_paths: Iterable[str | Path] | None) -> None:
    """Raise :class:`MissingDependencyError` for imported local modules not logged."""
    roots = code_path_roots(code_paths)
    missing = sorted(m for m in set(modules) if not _is_provided(m, roots))
    if missing:
        where = []
        for name in missing:
            spec = importlib.util.find_spec(name)
            where.append(f"{name} ({spec.origin if spec else '?'})")
        raise MissingDependencyError(
            "the agent imports local module(s) that would not exist where the model is "
            f"loaded: {', '.join(where)}. Pass them with code_paths=[...] "
            "or install them as a package listed in pip_requirements."
        )
