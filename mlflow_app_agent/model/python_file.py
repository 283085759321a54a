"""The one loader of an agent's Python file: ``serve agent.py[:name]``, ``validate``, logging
models from code, and loading them back from a model directory all run a file this way.

Which object is the agent, in order:

1. the variable named in ``FILE.py:VARIABLE``;
2. the object the file passed to ``mlflow.models.set_model`` (MLflow's models-from-code
   convention);
3. the only module-level :class:`~mlflow_app_agent.Agent`, else the only module-level
   ``mlflow.pyfunc.ResponsesAgent``; none or several is an error asking for a name.

The file runs as ``python FILE.py`` would see it (its directory, and ``extra_sys_path``,
first on ``sys.path``), and leaves nothing behind: the temporary module, the added
``sys.path`` entries and the sibling modules imported from those directories are removed
once the agent is found. A file that never imports MLflow is run without importing it.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.abc import Loader
from pathlib import Path
from types import ModuleType
from typing import Any

from mlflow_app_agent import agent_config
from mlflow_app_agent.authoring import Agent, as_agent
from mlflow_app_agent.errors import AgentDefinitionError, AgentFileError

_MLFLOW_MODEL_MODULE = "mlflow.models.model"  # where set_model keeps its object


def load_python_file(
    path: str | Path,
    attr: str | None = None,
    *,
    model_config: dict[str, Any] | None = None,
    extra_sys_path: Iterable[str | Path] = (),
) -> Agent:
    """Run ``path`` and return its agent (see the module docstring for which one).

    ``model_config`` is active while the file runs (``get_config`` at import time sees it).
    Raises :class:`AgentFileError` naming the file for every way it can be wrong.
    """
    file = Path(path)
    shown = repr(str(file))
    if not file.is_file():
        raise AgentFileError(f"agent file {shown} does not exist")
    with _scratch_import(file, extra_sys_path) as (module, loader):
        _reset_set_model()  # a value left by an earlier file is not this file's agent
        try:
            with agent_config.activate_config(model_config), _set_model_without_pyfunc():
                loader.exec_module(module)
        except SyntaxError as exc:
            raise AgentFileError(f"{file}:{exc.lineno}: {exc.msg}") from None
        except ModuleNotFoundError as exc:
            raise AgentFileError(
                f"running {shown} failed: ModuleNotFoundError: {exc} (not installed, or not "
                "logged with code_paths)"
            ) from exc
        except Exception as exc:
            raise AgentFileError(f"running {shown} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            set_by_file = _reset_set_model()
    return _pick(vars(module), attr, set_by_file, shown)


def _pick(namespace: dict[str, Any], attr: str | None, set_by_file: Any, shown: str) -> Agent:
    if attr:
        if attr not in namespace:
            raise AgentFileError(f"{shown} defines no {attr!r}")
        try:
            return as_agent(namespace[attr])
        except AgentDefinitionError as exc:  # say which file and variable, not just the type
            raise AgentFileError(f"{shown}:{attr} is not an agent: {exc.message}") from None
    if set_by_file is not None:
        try:
            return as_agent(set_by_file)
        except AgentDefinitionError as exc:
            raise AgentFileError(
                f"{shown} passed a non-agent to mlflow.models.set_model: {exc.message}"
            ) from None
    found = _unique(v for v in namespace.values() if isinstance(v, Agent))
    if not found:
        found = _unique(v for v in namespace.values() if _is_responses_agent(v))
    if len(found) != 1:
        what = "no Agent" if not found else f"{len(found)} agents"
        raise AgentFileError(
            f"{shown} defines {what}; name one as {shown}:<variable> or call "
            "mlflow.models.set_model(agent)"
        )
    return as_agent(found[0])


def _unique(values: Iterable[Any]) -> list[Any]:
    return list({id(v): v for v in values}.values())


def _is_responses_agent(value: Any) -> bool:
    if "mlflow.pyfunc" not in sys.modules or isinstance(value, type):
        return False  # a file that never imported MLflow cannot hold a ResponsesAgent
    from mlflow.pyfunc import ResponsesAgent

    return isinstance(value, ResponsesAgent)


@contextmanager
def _set_model_without_pyfunc() -> Iterator[None]:
    """While the file runs, ``mlflow.models.set_model(agent)`` records an :class:`Agent`
    without importing ``mlflow.pyfunc`` (MLflow's version does, and that imports pandas,
    which an app installed with mlflow-skinny does not have); anything else goes to MLflow's
    own. Only when MLflow is already imported: a file that never imports it stays so."""
    holder = sys.modules.get(_MLFLOW_MODEL_MODULE)
    package = sys.modules.get("mlflow.models")
    original = getattr(holder, "set_model", None)
    if holder is None or package is None or original is None:
        yield
        return

    def set_model(model: Any) -> None:
        if isinstance(model, Agent):
            holder.__mlflow_model__ = model  # type: ignore[attr-defined]
            return
        original(model)

    patched = [m for m in (holder, package) if getattr(m, "set_model", None) is original]
    for m in patched:
        m.set_model = set_model  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for m in patched:
            m.set_model = original  # type: ignore[attr-defined]


def _reset_set_model() -> Any:
    """Take (and clear) what ``mlflow.models.set_model`` stored, if MLflow is imported."""
    holder = sys.modules.get(_MLFLOW_MODEL_MODULE)
    if holder is None:
        return None
    value = getattr(holder, "__mlflow_model__", None)
    holder.__mlflow_model__ = None  # type: ignore[attr-defined]
    return value


@contextmanager
def _scratch_import(
    file: Path, extra_sys_path: Iterable[str | Path]
) -> Iterator[tuple[ModuleType, Loader]]:
    """A fresh module for ``file`` with its directory on ``sys.path``; afterwards the
    module, the added path entries and the modules imported from them are gone again."""
    name = f"_mlflow_app_agent_file_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise AgentFileError(f"cannot import {str(file)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    wanted = [str(file.resolve().parent), *(str(Path(p).resolve()) for p in extra_sys_path)]
    added = [p for p in dict.fromkeys(wanted) if p not in sys.path]
    before = set(sys.modules)
    sys.path[:0] = added
    sys.modules[name] = module
    try:
        yield module, spec.loader
    finally:
        sys.modules.pop(name, None)
        for entry in added:
            while entry in sys.path:
                sys.path.remove(entry)
        for new in set(sys.modules) - before:
            origin = getattr(sys.modules.get(new), "__file__", None)
            if origin and any(_is_under(origin, entry) for entry in added):
                del sys.modules[new]


def _is_under(file: str, directory: str) -> bool:
    try:
        Path(file).resolve().relative_to(directory)
    except ValueError:
        return False
    return True


__all__ = ["load_python_file"]
