"""Provenance source 3: the commit a CI system put in the environment, for builds that have
no ``.git`` (e.g. a container build that copied the sources). Such a commit cannot say
whether the tree it came from was clean: ``dirty`` is unknown."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from mlflow_app_agent.provenance import GitInfo, ci_ref, strip_credentials

_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


class _CiSystem(NamedTuple):
    name: str
    commit: str
    ref: tuple[str, ...]
    url: tuple[str, ...]


# each system: its commit variable, ref variables, and how to form the repository URL
_SYSTEMS = (
    _CiSystem("github-actions", "GITHUB_SHA", ("GITHUB_HEAD_REF", "GITHUB_REF_NAME"),
              ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY")),
    _CiSystem("gitlab-ci", "CI_COMMIT_SHA", ("CI_COMMIT_REF_NAME",), ("CI_PROJECT_URL",)),
    _CiSystem("azure-pipelines", "BUILD_SOURCEVERSION", ("BUILD_SOURCEBRANCHNAME",),
              ("BUILD_REPOSITORY_URI",)),
    _CiSystem("buildkite", "BUILDKITE_COMMIT", ("BUILDKITE_BRANCH",), ("BUILDKITE_REPO",)),
    _CiSystem("circleci", "CIRCLE_SHA1", ("CIRCLE_BRANCH",), ("CIRCLE_REPOSITORY_URL",)),
    _CiSystem("bitbucket-pipelines", "BITBUCKET_COMMIT", ("BITBUCKET_BRANCH",),
              ("BITBUCKET_GIT_HTTP_ORIGIN",)),
    _CiSystem("jenkins", "GIT_COMMIT", ("BRANCH_NAME", "GIT_BRANCH"), ("GIT_URL",)),
)


def read(environ: Mapping[str, str]) -> GitInfo | None:
    """The commit of the first CI system whose variables are set, or ``None``."""
    for system in _SYSTEMS:
        commit = (environ.get(system.commit) or "").strip()
        if not _SHA.match(commit):
            continue
        ref = next((environ[v] for v in system.ref if environ.get(v)), None)
        if ref:
            ref = ref.removeprefix("refs/heads/").removeprefix("origin/")
        return GitInfo(
            commit=commit.lower(),
            branch=ref or ci_ref(environ),
            detached=False,
            ci_ref=None,
            dirty=None,
            remote_url=_url(system, environ),
            source="ci-env",
            ci_system=system.name,
        )
    return None


def _url(system: _CiSystem, environ: Mapping[str, str]) -> str | None:
    values = [environ.get(v, "").strip() for v in system.url]
    if not all(values):
        return None
    url = "/".join(v.rstrip("/") for v in values)  # GitHub: server URL + "/" + owner/repo
    return strip_credentials(url)
