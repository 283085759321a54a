"""Provenance source 2: a Databricks Git folder (a notebook or a job task running from one,
or a job with a Git source).

A Git folder does not expose ``.git`` to the notebook's filesystem, but the Databricks
runtime tells the notebook what it checked out, and MLflow reads that through
``mlflow.utils.databricks_utils.get_git_repo_*`` (the REPL context first, the notebook's
command context second). We read it through the same functions, so whatever MLflow can see
on a runtime, we record — with the URL stripped of credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlflow_app_agent.provenance import GitInfo, strip_credentials

# what a Git folder's status says about uncommitted changes, when it says something we know
_CLEAN_STATUS = {"clean", "synced", "up_to_date", "up-to-date", "none"}
_DIRTY_STATUS = {"dirty", "modified", "uncommitted", "changed"}


def read() -> GitInfo | None:
    """The Git folder the current notebook or job task runs from, or ``None`` elsewhere."""
    try:
        from mlflow.utils import databricks_utils as dbu
    except ImportError:  # pragma: no cover - MLflow is a dependency
        return None
    commit = _ask(dbu.get_git_repo_commit)
    if not commit:
        return None
    url = _ask(dbu.get_git_repo_url)
    reference = _ask(dbu.get_git_repo_reference)
    reference_type = (_ask(dbu.get_git_repo_reference_type) or "").lower() or None
    status = _ask(dbu.get_git_repo_status)
    branch = reference if reference and reference_type in (None, "branch") else None
    tag = reference if reference_type == "tag" else None
    return GitInfo(
        commit=commit,
        branch=branch,
        detached=branch is None,
        ci_ref=None,
        dirty=_dirty_from_status(status),
        remote_url=strip_credentials(url) if url else None,
        source="databricks-git-folder",
        tag=tag,
        provider=_ask(dbu.get_git_repo_provider),
        relative_path=_ask(dbu.get_git_repo_relative_path),
        reference_type=reference_type,
        status=status,
    )


def _ask(getter: Callable[[], Any]) -> str | None:
    # Off Databricks each getter raises (no REPL context, no dbutils); that means "unknown".
    try:
        value = getter()
    except Exception:
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _dirty_from_status(status: str | None) -> bool | None:
    if status is None:
        return None
    word = status.strip().lower()
    if word in _CLEAN_STATUS:
        return False
    if word in _DIRTY_STATUS:
        return True
    return None  # a status we cannot interpret proves nothing
