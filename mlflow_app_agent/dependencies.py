"""What an agent imports: the local modules that would be missing where the model is loaded,
and the installed distributions it needs, as pinned requirements.

A module is "local" when it is importable here only because of the working directory or
``sys.path`` tweaks: not the standard library, not an installed distribution, not this
toolkit, and not inside the logged ``code_paths``. Such a module is reported at log time
with :class:`MissingDependencyError`, instead of failing when the app starts.

The *direct requirements* are the distributions installed here that provide the top-level
modules the agent imports (the code file and every ``.py`` file in ``code_paths``, or the
modules a pickled agent refers to), pinned to their installed versions, plus this toolkit
(the model's loader module is always ``mlflow_app_agent.flavor``). They are recorded beside
MLflow's own inference, which only sees what loading the model happens to import.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import pickletools
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_app_agent._version import DIST_NAME, __version__
from mlflow_app_agent.errors import AgentDefinitionError, MissingDependencyError

#: modules whose import needs a package that the lean app runtime (mlflow-skinny) lacks:
#: ``mlflow.pyfunc`` (where ``ResponsesAgent`` lives) imports pandas
IMPLIED_IMPORTS = {"mlflow.pyfunc": "pandas"}


def _with_implied(dotted: str, names: set[str]) -> None:
    names.add(dotted.split(".")[0])
    for prefix, implied in IMPLIED_IMPORTS.items():
        if dotted == prefix or dotted.startswith(prefix + "."):
            names.add(implied)


def imported_modules_of_source(source: str) -> set[str]:
    """Top-level module names a Python file imports (absolute imports only), plus what
    :data:`IMPLIED_IMPORTS` adds for them."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                _with_implied(alias.name, names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # "from mlflow import pyfunc" names mlflow.pyfunc
                _with_implied(f"{node.module}.{alias.name}", names)
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
            _with_implied(module, names)
            expect_subimport_arg = qualname in ("subimport", "dynamic_subimport")
        elif opcode.name == "STACK_GLOBAL" and len(recent) >= 2:
            module, qualname = recent[-2], recent[-1]
            _with_implied(module, names)
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


def toolkit_requirement() -> str:
    """This toolkit, pinned to the running version: every model it logs loads through it."""
    return f"{DIST_NAME}=={__version__}"


def imported_modules_of_code_paths(code_paths: Iterable[str | Path] | None) -> set[str]:
    """Top-level modules imported by the ``.py`` files of ``code_paths`` (files or trees)."""
    names: set[str] = set()
    for entry in code_paths or []:
        path = Path(entry)
        files = [path] if path.is_file() else sorted(path.rglob("*.py"))
        for file in files:
            if file.suffix != ".py":
                continue
            try:
                names |= imported_modules_of_source(file.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue  # not Python we can read; loading it would fail on its own
    return names


def distributions_of(modules: Iterable[str]) -> dict[str, str]:
    """``{canonical name: "name==version"}`` for the installed distributions that provide
    ``modules`` (``importlib.metadata.packages_distributions``). Standard-library and local
    modules map to none. A module several distributions provide (``mlflow`` by mlflow and
    mlflow-skinny) maps to the one named like it when there is one, else to all of them."""
    provided = importlib.metadata.packages_distributions()
    pins: dict[str, str] = {}
    for module in sorted(set(modules)):
        if module in sys.stdlib_module_names or module == "__future__":
            continue
        dists = list(dict.fromkeys(provided.get(module, [])))
        named = [d for d in dists if canonicalize_name(d) == canonicalize_name(module)]
        for dist in named or dists:
            try:
                version = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
            name = canonicalize_name(dist)
            pins[name] = f"{name}=={version}"
    return pins


def _names_in(requirements: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for line in requirements:
        try:
            names.add(canonicalize_name(Requirement(line.split(" #")[0].strip()).name))
        except InvalidRequirement:
            continue  # options (-r, -c, --index-url), paths, URLs
    return names


def direct_requirements(modules: Iterable[str], *, given: Iterable[str] = ()) -> list[str]:
    """Pinned requirements for what the agent imports directly, this toolkit first; packages
    already named in ``given`` (the caller's own requirements) are left to those."""
    pins = distributions_of(modules)
    pins[canonicalize_name(DIST_NAME)] = toolkit_requirement()
    named = _names_in(given)
    toolkit = canonicalize_name(DIST_NAME)
    order = [toolkit, *sorted(n for n in pins if n != toolkit)]
    return [pins[n] for n in order if n not in named]


def requirements_args(
    imports: Iterable[str],
    pip_requirements: Sequence[str] | str | None,
    extra_pip_requirements: Sequence[str] | str | None,
) -> tuple[list[str] | None, list[str] | None]:
    """``(pip_requirements, extra_pip_requirements)`` for MLflow, given the top-level modules
    the agent imports: the toolkit is always in; when MLflow infers (no ``pip_requirements``),
    what the agent imports directly is recorded beside its inference, pinned. Packages the
    caller names keep the caller's line. A requirements file path is read as MLflow reads it
    (lines; ``-r``/``-c`` from the cwd)."""
    if pip_requirements is not None:
        given = requirement_lines(pip_requirements)
        return given + direct_requirements((), given=given), None
    extra = requirement_lines(extra_pip_requirements)
    return None, direct_requirements(imports, given=extra) + extra


def requirement_lines(requirements: Sequence[str] | str | None) -> list[str]:
    """The lines of a requirements list, or of the file a string names."""
    if requirements is None:
        return []
    if isinstance(requirements, str):
        try:
            return Path(requirements).read_text().splitlines()
        except OSError as exc:
            raise AgentDefinitionError(
                f"requirements file {requirements!r} cannot be read: {exc.strerror or exc}"
            ) from None
    return [str(line) for line in requirements]
