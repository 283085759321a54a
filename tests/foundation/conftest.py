from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ECHO_SOURCE = (Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py").read_text()
TOKEN = "ghp_SuperSecretToken123"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository holding the echo agent, with a token-bearing remote URL."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "agent.py").write_text(ECHO_SOURCE)
    git(root, "add", "agent.py")
    git(root, "commit", "-qm", "initial")
    git(root, "remote", "add", "origin", f"https://user:{TOKEN}@github.com/org/agents.git")
    return root
