"""What the server serves: an agent plus where it came from (for ``/agent/info`` and traces).

Accepts an :class:`Agent`, an ``mlflow.pyfunc.ResponsesAgent``, a ``LoadedAgent`` from
:func:`mlflow_app_agent.model.load.load_agent`, a model URI or directory, or a Python file
(``agent.py`` or ``agent.py:name``) that defines an Agent / ResponsesAgent. A Python file
loads without importing MLflow, which keeps cold starts short.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

from mlflow_app_agent.authoring import Agent, as_agent
from mlflow_app_agent.errors import AgentDefinitionError, ModelLoadError


@dataclasses.dataclass
class ServedAgent:
    agent: Agent
    model_uri: str | None = None
    local_path: str | None = None
    model_id: str | None = None
    run_id: str | None = None
    registered_name: str | None = None
    registered_version: str | None = None
    flavor: str | None = None
    git: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the .py file served directly (no logged model): its git state is read at serve time
    source_file: str | None = None


def is_deferred(source: Any) -> bool:
    """Strings and paths are loaded at start-up (in a thread), objects right away."""
    return isinstance(source, (str, Path))


def resolve(source: Any) -> ServedAgent:
    if isinstance(source, ServedAgent):
        return source
    if isinstance(source, (str, Path)):
        return _from_location(str(source))
    if hasattr(source, "agent") and hasattr(source, "local_path"):
        return _from_loaded(source, model_uri=getattr(source, "model_uri", None))
    return ServedAgent(agent=as_agent(source))


def _from_location(location: str) -> ServedAgent:
    path_part, _, attr = location.partition(".py:")
    if location.endswith(".py") or attr:
        file = Path(path_part if attr else location[:-3]).with_suffix(".py")
        return ServedAgent(agent=load_python_file(file, attr or None),
                           source_file=str(file.resolve()))
    from mlflow_app_agent.model.load import load_agent

    try:
        loaded = load_agent(location)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load an agent from {location!r}: {exc}") from exc
    return _from_loaded(loaded, model_uri=getattr(loaded, "model_uri", None) or location)


def _from_loaded(loaded: Any, *, model_uri: str | None) -> ServedAgent:
    local = getattr(loaded, "local_path", None)
    return ServedAgent(
        agent=as_agent(loaded.agent),
        model_uri=model_uri,
        local_path=str(local) if local is not None else None,
        model_id=getattr(loaded, "model_id", None),
        run_id=getattr(loaded, "run_id", None),
        registered_name=getattr(loaded, "registered_name", None),
        registered_version=_str_or_none(getattr(loaded, "registered_version", None)),
        flavor=getattr(loaded, "flavor", None),
        git=dict(getattr(loaded, "git", None) or {}),
    )


def working_tree_git(file: str) -> dict[str, Any]:
    """Git state of the checkout holding a directly served file (what /agent/info shows
    when there is no logged model to carry it); ``commit`` is None outside a repository."""
    import warnings

    from mlflow_app_agent.provenance import collect

    source = {"source": "working tree at serve time"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not inside a git repository" is fine here
            info = collect([file], "auto")
    except Exception:  # no git binary, unreadable repository: serve without it
        return {"commit": None, **source}
    return {**(info.summary() if info else {"commit": None}), **source}


def load_python_file(path: Path, attr: str | None = None) -> Agent:
    """Execute ``path`` as a module and return its agent (``attr`` or the only one)."""
    if not path.is_file():
        raise ModelLoadError(f"agent file {str(path)!r} does not exist")
    module_name = f"_mlflow_app_agent_served_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # Let the file import its sibling modules, as `python agent.py` would.
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ModelLoadError(
            f"running {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if attr:
        if not hasattr(module, attr):
            raise ModelLoadError(f"{str(path)!r} defines no {attr!r}")
        try:
            return as_agent(getattr(module, attr))
        except AgentDefinitionError as exc:  # say which file and variable, not just the type
            raise ModelLoadError(f"{str(path)!r}:{attr} is not an agent: {exc.message}") from None
    found = [v for v in vars(module).values() if isinstance(v, Agent)]
    if not found:
        found = [as_agent(v) for v in vars(module).values() if _is_responses_agent(v)]
    unique = list({id(a): a for a in found}.values())
    if len(unique) != 1:
        what = "no Agent" if not unique else f"{len(unique)} agents"
        raise ModelLoadError(
            f"{str(path)!r} defines {what}; name one as {str(path)!r}:<variable>"
        )
    return unique[0]


def _is_responses_agent(value: Any) -> bool:
    from mlflow_app_agent.authoring import loaded_responses_agent_class

    if isinstance(value, type):
        return False
    cls = loaded_responses_agent_class()  # None: nothing imported mlflow.pyfunc
    return cls is not None and isinstance(value, cls)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
