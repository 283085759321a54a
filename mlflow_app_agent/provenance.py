"""Git provenance of a logged agent, read with GitPython.

Records the commit, the branch (or the CI ref on a detached HEAD), whether the tree is
dirty, which logged files git does not track, and the remote URL with credentials removed.
Uncommitted changes (and untracked logged files) are captured as a patch that is stored as
a model artifact, never as a tag.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from mlflow_app_agent.errors import ProvenanceError

GitMode = Literal["auto", "require-clean", "off"]
GIT_MODES = ("auto", "require-clean", "off")
DIFF_ARTIFACT = "git/diff.patch"

# CI systems and the variable holding the branch/ref they built, in order of preference.
CI_REF_VARIABLES = (
    "GITHUB_HEAD_REF",  # pull requests on GitHub Actions
    "GITHUB_REF_NAME",
    "CI_COMMIT_REF_NAME",  # GitLab
    "BUILD_SOURCEBRANCHNAME",  # Azure Pipelines
    "BUILDKITE_BRANCH",
    "CIRCLE_BRANCH",
    "BRANCH_NAME",  # Jenkins multibranch
    "GIT_BRANCH",  # Jenkins git plugin
)

# git's own commit tags in MLflow's vocabulary
TAG_COMMIT = "mlflow.source.git.commit"
TAG_BRANCH = "mlflow.source.git.branch"
TAG_REPO_URL = "mlflow.source.git.repoURL"
TAG_DIRTY = "mlflow_app_agent.git.dirty"


@dataclasses.dataclass(frozen=True)
class GitInfo:
    commit: str
    branch: str | None
    detached: bool
    ci_ref: str | None
    dirty: bool
    remote_url: str | None
    untracked: tuple[str, ...]
    repo_root: str
    diff: str = dataclasses.field(default="", repr=False)

    @property
    def ref(self) -> str | None:
        """The branch, or on a detached HEAD the ref CI says it built."""
        return self.branch or self.ci_ref

    def summary(self) -> dict[str, Any]:
        """What goes into MLmodel: everything but the patch text and the local path."""
        out: dict[str, Any] = {
            "commit": self.commit,
            "branch": self.ref,
            "detached": self.detached,
            "dirty": self.dirty,
            "remote_url": self.remote_url,
            "untracked": list(self.untracked),
        }
        if self.ci_ref:
            out["ci_ref"] = self.ci_ref
        if self.diff:
            out["diff_artifact"] = DIFF_ARTIFACT
            out["diff_sha256"] = hashlib.sha256(self.diff.encode()).hexdigest()
        return out

    def tags(self) -> dict[str, str]:
        """MLflow's standard ``mlflow.source.git.*`` tags plus our dirty flag."""
        tags = {TAG_COMMIT: self.commit, TAG_DIRTY: str(self.dirty).lower()}
        if self.ref:
            tags[TAG_BRANCH] = self.ref
        if self.remote_url:
            tags[TAG_REPO_URL] = self.remote_url
        return tags


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.*)$")


def strip_credentials(url: str) -> str:
    """Remove ``user:password@`` / ``token@`` from a remote URL; keep ssh/scp user names
    (``git@github.com:org/repo``) since they are not secrets."""
    if "://" not in url:
        return url if _SCP_LIKE.match(url) else url.split("@")[-1]
    parts = urlsplit(url)
    if parts.scheme in ("ssh", "git+ssh") and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", parts.fragment))


def ci_ref(environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    for name in CI_REF_VARIABLES:
        value = env.get(name)
        if value:
            return value.removeprefix("refs/heads/").removeprefix("origin/")
    return None


def collect(
    paths: Iterable[str | os.PathLike[str]],
    mode: GitMode = "auto",
    *,
    environ: Mapping[str, str] | None = None,
) -> GitInfo | None:
    """Git provenance of the repository holding ``paths`` (the logged code).

    ``mode="auto"`` warns and returns ``None`` outside a repository;
    ``"require-clean"`` raises :class:`ProvenanceError` outside a repository or on a dirty
    tree (including logged files git does not track); ``"off"`` returns ``None``.
    """
    if mode not in GIT_MODES:
        raise ProvenanceError(f"git must be one of {', '.join(GIT_MODES)}; got {mode!r}")
    if mode == "off":
        return None
    resolved = [Path(p).resolve() for p in paths]
    anchor = resolved[0] if resolved else Path.cwd()
    repo = _open_repo(anchor)
    if repo is None:
        message = f"{anchor} is not inside a git repository; logging without git provenance"
        if mode == "require-clean":
            raise ProvenanceError(
                f"git='require-clean' but {anchor} is not inside a git repository"
            )
        warnings.warn(message, stacklevel=3)
        return None
    try:
        info = _read(repo, resolved, environ)
    finally:
        repo.close()
    if mode == "require-clean" and info.dirty:
        what = []
        if info.untracked:
            what.append(f"untracked logged files: {', '.join(info.untracked)}")
        if info.diff and not info.untracked:
            what.append("uncommitted changes")
        raise ProvenanceError(
            f"git='require-clean' but the working tree of {info.repo_root} is dirty "
            f"({'; '.join(what) or 'uncommitted changes'}); commit first or use git='auto'"
        )
    return info


def _open_repo(path: Path) -> Any:
    import git

    start = path if path.is_dir() else path.parent
    try:
        return git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None


def _read(repo: Any, paths: list[Path], environ: Mapping[str, str] | None) -> GitInfo:
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
