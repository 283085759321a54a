from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from mlflow_app_agent import provenance
from mlflow_app_agent.errors import ProvenanceError

from .conftest import TOKEN, git


def test_clean_repository(repo: Path) -> None:
    info = provenance.collect([repo / "agent.py"])
    assert info is not None
    assert info.commit == git(repo, "rev-parse", "HEAD")
    assert info.branch == "main" and not info.detached
    assert not info.dirty and info.diff == "" and info.untracked == ()
    assert info.remote_url == "https://github.com/org/agents.git"
    assert info.tags()["mlflow.source.git.commit"] == info.commit
    assert "diff_artifact" not in info.summary()


def test_dirty_tree_records_the_diff(repo: Path) -> None:
    path = repo / "agent.py"
    path.write_text(path.read_text() + "\n# tuned prompt\n")
    info = provenance.collect([path])
    assert info is not None and info.dirty
    assert "+# tuned prompt" in info.diff and "a/agent.py" in info.diff
    assert info.summary()["diff_artifact"] == provenance.DIFF_ARTIFACT
    with pytest.raises(ProvenanceError, match="dirty"):
        provenance.collect([path], "require-clean")


def test_untracked_agent_file_is_dirty_and_in_the_patch(repo: Path) -> None:
    new = repo / "new_agent.py"
    new.write_text("x = 1\n")
    info = provenance.collect([new])
    assert info is not None
    assert info.untracked == ("new_agent.py",) and info.dirty
    assert "new file mode" in info.diff and "+x = 1" in info.diff
    with pytest.raises(ProvenanceError, match="untracked logged files: new_agent.py"):
        provenance.collect([new], "require-clean")


def test_untracked_files_not_logged_do_not_matter(repo: Path) -> None:
    (repo / "scratch.txt").write_text("notes")
    info = provenance.collect([repo / "agent.py"], "require-clean")
    assert info is not None and not info.dirty


def test_detached_head_records_the_ci_ref(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    info = provenance.collect([repo / "agent.py"], environ={"GITHUB_REF_NAME": "release/1.2"})
    assert info is not None and info.detached and info.branch is None
    assert info.ref == "release/1.2" and info.tags()["mlflow.source.git.branch"] == "release/1.2"
    bare = provenance.collect([repo / "agent.py"], environ={})
    assert bare is not None and bare.ref is None and "mlflow.source.git.branch" not in bare.tags()


def test_no_repository(tmp_path: Path) -> None:
    file = tmp_path / "agent.py"
    file.write_text("x = 1\n")
    with pytest.warns(UserWarning, match="not inside a git repository"):
        assert provenance.collect([file], "auto") is None
    with pytest.raises(ProvenanceError, match="not inside a git repository"):
        provenance.collect([file], "require-clean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert provenance.collect([file], "off") is None


def test_bad_mode(tmp_path: Path) -> None:
    with pytest.raises(ProvenanceError, match="git must be one of"):
        provenance.collect([tmp_path], "sometimes")  # type: ignore[arg-type]


def test_credentials_never_recorded(repo: Path) -> None:
    info = provenance.collect([repo / "agent.py"])
    assert info is not None
    assert TOKEN not in repr(info) and TOKEN not in str(info.summary()) and TOKEN not in str(
        info.tags()
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://tok@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://u:p@host:8443/o/r?x=1", "https://host:8443/o/r"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("ssh://git@host/o/r.git", "ssh://git@host/o/r.git"),
        ("ssh://git:pw@host/o/r.git", "ssh://host/o/r.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
    ],
)
def test_strip_credentials(url: str, expected: str) -> None:
    assert provenance.strip_credentials(url) == expected


def test_ci_ref_prefers_pull_request_head() -> None:
    env = {"GITHUB_HEAD_REF": "feature", "GITHUB_REF_NAME": "12/merge"}
    assert provenance.ci_ref(env) == "feature"
    assert provenance.ci_ref({"GIT_BRANCH": "origin/main"}) == "main"
    assert provenance.ci_ref({}) is None


def test_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("")
    with pytest.raises(ProvenanceError, match="no commits"):
        provenance.collect([tmp_path / "a.py"])
