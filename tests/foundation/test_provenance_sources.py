"""Git provenance where there is no checkout: a Databricks Git folder, a job's Git source,
CI variables in a container build, and nothing at all.

No Databricks runtime exists here. MLflow's ``databricks_utils`` reads the notebook's REPL
context from ``dbruntime.databricks_repl_context``; ``stand_in/`` provides that module (and
only that), so MLflow's real code path runs and ours reads through it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from click.testing import CliRunner

import mlflow_app_agent
from mlflow_app_agent import provenance
from mlflow_app_agent.errors import ProvenanceError

from .conftest import ECHO_SOURCE, TOKEN

STAND_IN = Path(__file__).resolve().parent / "stand_in"
COMMIT = "3f2a9c1d4b5e6f708192a3b4c5d6e7f8091a2b3c"
PIP = ["mlflow-app-agent"]


@pytest.fixture(autouse=True)
def _no_ci_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever CI runs these tests, only the variables a test sets are seen."""
    import os

    for name in list(os.environ):
        if name.startswith(("GITHUB_", "CI_", "BUILD_", "BUILDKITE", "CIRCLE_", "BITBUCKET_",
                            "GIT_")) or name in ("BRANCH_NAME",):
            monkeypatch.delenv(name)


@pytest.fixture
def no_checkout(tmp_path: Path) -> Path:
    """An agent file in a directory that no git repository holds (as in a Git folder,
    whose .git the notebook cannot see, or a container build)."""
    folder = tmp_path / "Workspace" / "Users" / "dev" / "agents"
    folder.mkdir(parents=True)
    (folder / "agent.py").write_text(ECHO_SOURCE)
    return folder / "agent.py"


@pytest.fixture
def git_folder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Put the dbruntime stand-in on sys.path (and on PYTHONPATH, for the Pythons MLflow
    starts) and return a setter for the notebook's REPL context."""
    import os
    import sys

    monkeypatch.syspath_prepend(str(STAND_IN))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(STAND_IN), os.environ.get("PYTHONPATH")) if p))

    def set_context(**attributes: Any) -> None:
        monkeypatch.setenv("DBRUNTIME_STAND_IN_CONTEXT", json.dumps(attributes))

    yield set_context
    for name in [m for m in sys.modules if m == "dbruntime" or m.startswith("dbruntime.")]:
        del sys.modules[name]


def _folder_context(**overrides: Any) -> dict[str, Any]:
    context = {
        "mlflowGitRepoUrl": f"https://dev:{TOKEN}@github.com/org/agents.git",
        "mlflowGitRepoProvider": "gitHub",
        "mlflowGitRepoCommit": COMMIT,
        "mlflowGitRelativePath": "agents/agent",
        "mlflowGitRepoReference": "feature/obo-tools",
        "mlflowGitRepoReferenceType": "branch",
    }
    context.update(overrides)
    return context


def test_databricks_git_folder_is_read_through_mlflow(no_checkout: Path, git_folder: Any) -> None:
    git_folder(**_folder_context())
    info = provenance.collect([no_checkout])
    assert info is not None and info.source == "databricks-git-folder"
    assert info.commit == COMMIT and info.branch == "feature/obo-tools"
    assert info.remote_url == "https://github.com/org/agents.git"
    assert info.provider == "gitHub" and info.relative_path == "agents/agent"
    # the context gave no status: the dirty state is unknown, never clean
    assert info.dirty is None and info.summary()["dirty"] == "unknown"
    tags = info.tags()
    assert "mlflow.source.git.dirty" not in tags
    assert tags["mlflow.source.git.commit"] == COMMIT
    assert tags["mlflow.source.git.branch"] == "feature/obo-tools"
    assert tags["mlflow.databricks.gitRepoUrl"] == "https://github.com/org/agents.git"
    assert tags["mlflow.databricks.gitRepoReferenceType"] == "branch"
    assert tags["mlflow_app_agent.git.source"] == "databricks-git-folder"
    assert TOKEN not in repr(info) + json.dumps(info.summary()) + json.dumps(tags)
    with pytest.raises(ProvenanceError, match="cannot tell whether .* is clean"):
        provenance.collect([no_checkout], "require-clean")


@pytest.mark.parametrize(("status", "dirty"), [("clean", False), ("dirty", True),
                                               ("SOMETHING-NEW", None)])
def test_git_folder_status_decides_dirty_only_when_it_is_clear(
    no_checkout: Path, git_folder: Any, status: str, dirty: bool | None
) -> None:
    git_folder(**_folder_context(mlflowGitRepoStatus=status))
    info = provenance.collect([no_checkout])
    assert info is not None and info.dirty is dirty and info.status == status
    if dirty is False:
        assert provenance.collect([no_checkout], "require-clean") is not None
    else:
        with pytest.raises(ProvenanceError, match="require-clean"):
            provenance.collect([no_checkout], "require-clean")


@pytest.mark.parametrize("reference_type", ["tag", "commit"])
def test_job_from_a_git_source(no_checkout: Path, git_folder: Any, reference_type: str) -> None:
    reference = "v1.4.0" if reference_type == "tag" else COMMIT
    git_folder(**_folder_context(mlflowGitRepoReference=reference,
                                 mlflowGitRepoReferenceType=reference_type.upper()))
    info = provenance.collect([no_checkout])
    assert info is not None and info.source == "databricks-git-folder"
    assert info.branch is None and info.detached
    assert info.reference_type == reference_type
    assert info.tag == ("v1.4.0" if reference_type == "tag" else None)
    tags = info.tags()
    assert "mlflow.source.git.branch" not in tags
    assert tags["mlflow.databricks.gitRepoReference"] == reference


def test_checkout_wins_over_the_other_sources(repo: Path, git_folder: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    git_folder(**_folder_context())
    monkeypatch.setenv("GITHUB_SHA", COMMIT)
    info = provenance.collect([repo / "agent.py"])
    assert info is not None and info.source == "checkout" and info.commit != COMMIT
    assert info.dirty is False


@pytest.mark.parametrize(
    ("env", "system", "url", "branch"),
    [
        ({"GITHUB_SHA": COMMIT, "GITHUB_REF_NAME": "main",
          "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "org/agents"},
         "github-actions", "https://github.com/org/agents", "main"),
        ({"CI_COMMIT_SHA": COMMIT, "CI_COMMIT_REF_NAME": "release/2",
          "CI_PROJECT_URL": f"https://gitlab-ci-token:{TOKEN}@gitlab.example.com/g/agents"},
         "gitlab-ci", "https://gitlab.example.com/g/agents", "release/2"),
        ({"BUILD_SOURCEVERSION": COMMIT, "BUILD_SOURCEBRANCHNAME": "main",
          "BUILD_REPOSITORY_URI": f"https://org:{TOKEN}@dev.azure.com/org/p/_git/agents"},
         "azure-pipelines", "https://dev.azure.com/org/p/_git/agents", "main"),
    ],
)
def test_ci_variables_without_a_checkout(
    no_checkout: Path, env: dict[str, str], system: str, url: str, branch: str
) -> None:
    info = provenance.collect([no_checkout], environ=env)
    assert info is not None and info.source == "ci-env" and info.ci_system == system
    assert info.commit == COMMIT and info.branch == branch and info.remote_url == url
    assert info.dirty is None and info.summary()["dirty"] == "unknown"
    assert "mlflow.source.git.dirty" not in info.tags()
    assert TOKEN not in json.dumps(info.summary()) + json.dumps(info.tags())
    with pytest.raises(ProvenanceError, match="ci-env source cannot tell"):
        provenance.collect([no_checkout], "require-clean", environ=env)


def test_a_ci_variable_that_is_not_a_commit_is_ignored(no_checkout: Path) -> None:
    with pytest.warns(UserWarning, match="without git provenance"):
        assert provenance.collect([no_checkout], environ={"GIT_COMMIT": "not-a-sha"}) is None


def test_no_source_at_all(no_checkout: Path, tracking_uri: str, unique_name: str) -> None:
    with pytest.warns(UserWarning, match="without git provenance"):
        assert provenance.collect([no_checkout], environ={}) is None
    with pytest.raises(ProvenanceError, match="neither a Databricks Git folder nor CI"):
        mlflow_app_agent.log_model(str(no_checkout), name="a", git="require-clean",
                                   registered_model_name=unique_name, pip_requirements=PIP)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = mlflow_app_agent.log_model(str(no_checkout), name="a", pip_requirements=PIP,
                                          registered_model_name=unique_name)
    tags = mlflow.MlflowClient().get_logged_model(info.model_id).tags
    assert "mlflow_app_agent.git.source" not in tags
    conf = _flavor_conf(f"models:/{unique_name}/1")
    assert conf.get("git") is None


def _flavor_conf(uri: str) -> dict[str, Any]:
    local = Path(mlflow.artifacts.download_artifacts(uri))
    return dict(yaml.safe_load((local / "MLmodel").read_text())["flavors"]["mlflow_app_agent"])


def _served_git(uri: str) -> dict[str, Any]:
    """/agent/info of the real app (the model loads in a worker thread: wait for /ready)."""
    import time

    from fastapi.testclient import TestClient

    from mlflow_app_agent.server import create_app

    # untraced: /agent/info is all this reads, and a traced app starts a writer process
    with TestClient(create_app(uri, tracing=False)) as client:
        deadline = time.monotonic() + 60
        while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        return dict(client.get("/agent/info").json()["git"])


def _store_bytes(tracking_uri: str) -> bytes:
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    data = db.read_bytes()
    for file in db.parent.rglob("*"):
        if file.is_file() and file != db:
            data += file.read_bytes()
    return data


@pytest.mark.e2e
def test_git_folder_log_tags_conf_info_and_served_info_agree(
    no_checkout: Path, git_folder: Any, tracking_uri: str, unique_name: str
) -> None:
    from mlflow_app_agent.quickstart import info_command

    git_folder(**_folder_context(mlflowGitRepoStatus="clean"))
    info = mlflow_app_agent.log_model(str(no_checkout), name="a", git="require-clean",
                                      registered_model_name=unique_name, pip_requirements=PIP)
    uri = f"models:/{unique_name}/1"
    tags = mlflow.MlflowClient().get_logged_model(info.model_id).tags
    assert tags["mlflow.source.git.commit"] == COMMIT
    assert tags["mlflow.source.git.branch"] == "feature/obo-tools"
    assert tags["mlflow.source.git.dirty"] == "false"
    assert tags["mlflow.source.git.repoURL"] == "https://github.com/org/agents.git"
    assert tags["mlflow.databricks.gitRepoCommit"] == COMMIT
    assert tags["mlflow.databricks.gitRepoStatus"] == "clean"
    conf_git = _flavor_conf(uri)["git"]
    assert conf_git["source"] == "databricks-git-folder" and conf_git["commit"] == COMMIT
    assert conf_git["dirty"] is False and conf_git["branch"] == "feature/obo-tools"

    shown = CliRunner().invoke(info_command, [uri])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["git"] == conf_git

    served = _served_git(uri)
    for key in ("source", "commit", "branch", "dirty", "remote_url", "provider"):
        assert served[key] == conf_git[key], key
    assert TOKEN.encode() not in _store_bytes(tracking_uri)


@pytest.mark.e2e
def test_ci_env_log_records_unknown_dirty_everywhere(
    no_checkout: Path, tracking_uri: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {"GITHUB_SHA": COMMIT, "GITHUB_REF_NAME": "main",
                        "GITHUB_SERVER_URL": f"https://x-access-token:{TOKEN}@github.com",
                        "GITHUB_REPOSITORY": "org/agents"}.items():
        monkeypatch.setenv(name, value)
    info = mlflow_app_agent.log_model(str(no_checkout), name="a", pip_requirements=PIP,
                                      registered_model_name=unique_name)
    tags = mlflow.MlflowClient().get_logged_model(info.model_id).tags
    assert tags["mlflow.source.git.commit"] == COMMIT
    assert tags["mlflow_app_agent.git.source"] == "ci-env"
    assert "mlflow.source.git.dirty" not in tags
    conf_git = _flavor_conf(f"models:/{unique_name}/1")["git"]
    assert conf_git["dirty"] == "unknown" and conf_git["ci_system"] == "github-actions"
    served = _served_git(f"models:/{unique_name}/1")
    assert served["dirty"] == "unknown" and served["source"] == "ci-env"
    assert served["remote_url"] == "https://github.com/org/agents"
    assert TOKEN.encode() not in _store_bytes(tracking_uri)
