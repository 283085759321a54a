"""Provenance source 1: the git checkout around the logged code, read with GitPython."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow_app_agent.errors import ProvenanceError
from mlflow_app_agent.provenance import GitInfo, ci_ref, strip_credentials


def read(anchor: Path, paths: list[Path], environ: Mapping[str, str]) -> GitInfo | None:
    """The checkout holding ``anchor``, or ``None`` outside a repository."""
    repo = _open_repo(anchor)
    if repo is None:
        return None
    try:
        return _read(repo, paths, environ)
    finally:
        repo.close()


def _open_repo(path: Path) -> Any:
    import git

    start = path if path.is_dir() else path.parent
    try:
        return git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _read(repo: Any, paths: list[Path], environ: Mapping[str, str]) -> GitInfo:
    import git

    root = Path(repo.working_tree_dir).resolve()
    try:
        commit = repo.head.commit.hexsha
    except ValueError:
        raise ProvenanceError(f"the git repository at {root} has no commits yet") from None
    detached = repo.head.is_detached
    branch = None if detached else repo.active_branch.name
    remote_url = None
    if repo.remotes:
        remote = repo.remotes["origin"] if "origin" in repo.remotes else repo.remotes[0]
        try:
            remote_url = strip_credentials(next(iter(remote.urls)))
        except (StopIteration, git.GitCommandError):
            remote_url = None

    logged = _logged_files(paths, root)
    untracked_all = set(repo.untracked_files)
    untracked = tuple(sorted(f for f in logged if f in untracked_all))
    pieces = [repo.git.diff("HEAD", "--no-color", "--no-ext-diff", "--binary")]
    pieces += [_new_file_patch(repo, rel) for rel in untracked]
    diff = "".join(p if p.endswith("\n") else p + "\n" for p in pieces if p)
    return GitInfo(
        commit=commit,
        branch=branch,
        detached=detached,
        ci_ref=ci_ref(environ) if detached else None,
        dirty=bool(diff) or bool(untracked),
        remote_url=remote_url,
        untracked=untracked,
        repo_root=str(root),
        diff=diff,
        source="checkout",
    )


def _logged_files(paths: list[Path], root: Path) -> list[str]:
    files: list[str] = []
    for path in paths:
        candidates = path.rglob("*") if path.is_dir() else [path]
        for file in candidates:
            if file.is_file() and "__pycache__" not in file.parts:
                try:
                    files.append(file.resolve().relative_to(root).as_posix())
                except ValueError:
                    continue  # outside this repository
    return files


def _new_file_patch(repo: Any, rel: str) -> str:
    # --no-index exits 1 when the files differ, so read the output without raising.
    _status, out, _err = repo.git.execute(
        ["git", "diff", "--no-index", "--no-color", "--binary", "/dev/null", rel],
        with_extended_output=True,
        with_exceptions=False,
        strip_newline_in_stdout=False,
    )
    return str(out)
