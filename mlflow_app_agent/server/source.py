"""What the server serves: a :class:`~mlflow_app_agent.model.load.LoadedAgent` (an agent plus
where it came from, for ``/agent/info`` and traces).

Accepts an :class:`Agent`, an ``mlflow.pyfunc.ResponsesAgent``, a ``LoadedAgent``, or any
location :class:`~mlflow_app_agent.model.location.Location` accepts (a model URI or
directory, or ``agent.py[:name]``). A Python file loads without importing MLflow, which keeps
cold starts short.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow_app_agent.authoring import as_agent
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.model.load import LoadedAgent
from mlflow_app_agent.model.location import Location


def is_deferred(source: Any) -> bool:
    """Strings, paths and locations are loaded at start-up (in a thread), objects at once."""
    return isinstance(source, (str, Path, Location))


def resolve(source: Any) -> LoadedAgent:
    if isinstance(source, LoadedAgent):
        return source
    if is_deferred(source):
        return _from_location(source)
    return LoadedAgent(agent=as_agent(source))


def _from_location(source: str | Path | Location) -> LoadedAgent:
    from mlflow_app_agent.model.load import load_agent

    location = Location.parse(source)
    try:
        return load_agent(location)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"cannot load an agent from {location.text!r}: {exc}") from exc


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
