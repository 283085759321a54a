"""Git provenance of a logged agent, from the first source that knows it.

Sources, in order (the one used is recorded as ``source``):

1. ``checkout`` — the git repository around the logged code, read with GitPython:
   commit, branch (or the CI ref on a detached HEAD), dirty state, logged files git does not
   track, and the uncommitted changes as a patch (a model artifact, never a tag).
2. ``databricks-git-folder`` — a notebook or job task running from a Databricks Git folder
   (or a job's Git source), whose ``.git`` is not on the notebook's filesystem: the facts
   come from the Databricks REPL context through MLflow's own ``databricks_utils``.
3. ``ci-env`` — a build with no ``.git`` (a container build): the commit, ref and
   repository URL that the CI system puts in the environment.

Each source says only what it can know: a Git folder's dirty state comes from its context
where it gives one, and an environment-only commit cannot know it at all — ``dirty`` is
then ``"unknown"``, never clean. Remote URLs are stripped of credentials whatever the source.
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
GitSource = Literal["checkout", "databricks-git-folder", "ci-env"]
DIFF_ARTIFACT = "git/diff.patch"
UNKNOWN = "unknown"

# CI systems and the variable holding the branch/ref they built, in order of preference.
CI_REF_VARIABLES = (
    "GITHUB_HEAD_REF",  # pull requests on GitHub Actions
    "GITHUB_REF_NAME",
    "CI_COMMIT_REF_NAME",  # GitLab
    "BUILD_SOURCEBRANCHNAME",  # Azure Pipelines
    "BUILDKITE_BRANCH",
    "CIRCLE_BRANCH",
    "BITBUCKET_BRANCH",
    "BRANCH_NAME",  # Jenkins multibranch
    "GIT_BRANCH",  # Jenkins git plugin
)

# MLflow's vocabulary (mlflow.utils.mlflow_tags), written without importing MLflow
TAG_COMMIT = "mlflow.source.git.commit"
TAG_BRANCH = "mlflow.source.git.branch"
TAG_REPO_URL = "mlflow.source.git.repoURL"
TAG_DIRTY = "mlflow.source.git.dirty"
TAG_SOURCE = "mlflow_app_agent.git.source"
# the Databricks Git folder tags Databricks' UI links a commit by
DATABRICKS_TAGS = {
    "remote_url": "mlflow.databricks.gitRepoUrl",
    "commit": "mlflow.databricks.gitRepoCommit",
    "provider": "mlflow.databricks.gitRepoProvider",
    "relative_path": "mlflow.databricks.gitRepoRelativePath",
    "reference": "mlflow.databricks.gitRepoReference",
    "reference_type": "mlflow.databricks.gitRepoReferenceType",
    "status": "mlflow.databricks.gitRepoStatus",
}


@dataclasses.dataclass(frozen=True)
class GitInfo:
    """Where the logged code came from. ``dirty`` is ``None`` when the source cannot know."""

    commit: str
    branch: str | None
    detached: bool
    ci_ref: str | None
    dirty: bool | None
    remote_url: str | None
    untracked: tuple[str, ...] = ()
    repo_root: str | None = None
    diff: str = dataclasses.field(default="", repr=False)
    source: GitSource = "checkout"
    # what a Databricks Git folder (or CI) says beyond the common facts
    tag: str | None = None
    provider: str | None = None
    relative_path: str | None = None
    reference_type: str | None = None
    status: str | None = None
    ci_system: str | None = None

    @property
    def ref(self) -> str | None:
        """The branch, or on a detached HEAD the ref CI says it built."""
        return self.branch or self.ci_ref

    @property
    def dirty_state(self) -> str:
        """``"clean"``, ``"dirty"`` or ``"unknown"``."""
        return UNKNOWN if self.dirty is None else ("dirty" if self.dirty else "clean")

    def summary(self) -> dict[str, Any]:
        """What goes into MLmodel: everything but the patch text and the local path."""
        out: dict[str, Any] = {
            "source": self.source,
            "commit": self.commit,
            "branch": self.ref,
            "detached": self.detached,
            "dirty": UNKNOWN if self.dirty is None else self.dirty,
            "remote_url": self.remote_url,
            "untracked": list(self.untracked),
        }
        optional = {
            "ci_ref": self.ci_ref,
            "tag": self.tag,
            "provider": self.provider,
            "relative_path": self.relative_path,
            "reference_type": self.reference_type,
            "status": self.status,
            "ci_system": self.ci_system,
        }
        out.update({k: v for k, v in optional.items() if v})
        if self.diff:
            out["diff_artifact"] = DIFF_ARTIFACT
            out["diff_sha256"] = hashlib.sha256(self.diff.encode()).hexdigest()
        return out

    def tags(self) -> dict[str, str]:
        """MLflow's ``mlflow.source.git.*`` tags (``dirty`` only where it is known), the
        source we read, and from a Git folder the ``mlflow.databricks.gitRepo*`` tags."""
        tags = {TAG_COMMIT: self.commit, TAG_SOURCE: self.source}
        if self.dirty is not None:
            tags[TAG_DIRTY] = str(self.dirty).lower()
        if self.ref:
            tags[TAG_BRANCH] = self.ref
        if self.remote_url:
            tags[TAG_REPO_URL] = self.remote_url
        if self.source == "databricks-git-folder":
            reference = self.branch or self.tag or self.commit
            facts = {
                "remote_url": self.remote_url,
                "commit": self.commit,
                "provider": self.provider,
                "relative_path": self.relative_path,
                "reference": reference,
                "reference_type": self.reference_type,
                "status": self.status,
            }
            tags.update({DATABRICKS_TAGS[k]: v for k, v in facts.items() if v})
        return tags


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.*)$")


def strip_credentials(url: str) -> str:
    """Remove ``user:password@`` / ``token@`` (and any query string) from a remote URL;
    keep ssh/scp user names (``git@github.com:org/repo``) since they are not secrets."""
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
    """Git provenance of the code in ``paths`` (the logged code), from the first source
    that knows it: the checkout, a Databricks Git folder, CI environment variables.

    ``mode="auto"`` warns and returns ``None`` when no source knows; ``"require-clean"``
    raises :class:`ProvenanceError` unless a source proves the tree clean (no source, a
    dirty tree, untracked logged files, or a source that cannot tell); ``"off"`` returns
    ``None``.
    """
    from mlflow_app_agent.provenance import checkout, ci_env, databricks

    if mode not in GIT_MODES:
        raise ProvenanceError(f"git must be one of {', '.join(GIT_MODES)}; got {mode!r}")
    if mode == "off":
        return None
    env = os.environ if environ is None else environ
    resolved = [Path(p).resolve() for p in paths]
    anchor = resolved[0] if resolved else Path.cwd()
    info = checkout.read(anchor, resolved, env)
    if info is None:
        info = databricks.read()
    if info is None:
        info = ci_env.read(env)
    if info is None:
        if mode == "require-clean":
            raise ProvenanceError(
                f"git='require-clean' but {anchor} is not inside a git repository, and "
                "neither a Databricks Git folder nor CI environment variables give a commit"
            )
        warnings.warn(
            f"{anchor} is not inside a git repository (and no Databricks Git folder or CI "
            "variables give a commit); logging without git provenance",
            stacklevel=3,
        )
        return None
    if mode == "require-clean":
        _require_clean(info)
    return info


def _require_clean(info: GitInfo) -> None:
    where = info.repo_root or info.remote_url or info.source
    if info.dirty is None:
        raise ProvenanceError(
            f"git='require-clean' but the {info.source} source cannot tell whether "
            f"{where} at {info.commit[:12]} is clean"
            + (f" (Git folder status: {info.status!r})" if info.status else "")
            + "; log from a checkout, or use git='auto'"
        )
    if info.dirty:
        what = []
        if info.untracked:
            what.append(f"untracked logged files: {', '.join(info.untracked)}")
        elif info.status:
            what.append(f"Git folder status: {info.status}")
        raise ProvenanceError(
            f"git='require-clean' but the working tree of {where} is dirty "
            f"({'; '.join(what) or 'uncommitted changes'}); commit first or use git='auto'"
        )


__all__ = [
    "DIFF_ARTIFACT",
    "GIT_MODES",
    "GitInfo",
    "GitMode",
    "GitSource",
    "ProvenanceError",
    "ci_ref",
    "collect",
    "strip_credentials",
]
