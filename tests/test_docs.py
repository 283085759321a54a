"""The docs build with mkdocs in strict mode (broken links and missing pages fail)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
@pytest.mark.slow
def test_mkdocs_strict_build(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "index.html").is_file()


def test_readme_keeps_exactly_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count("<!-- quickstart-command -->") == 1
    assert readme.count("<!-- test-command -->") == 1
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci


@pytest.mark.e2e
@pytest.mark.slow
def test_readme_notebook_snippet_runs_as_written(tmp_path: Path) -> None:
    import os
    import re

    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"## In a notebook\s+```python\n(.*?)```", readme, re.S)
    assert snippet is not None
    (tmp_path / "snippet.py").write_text(snippet.group(1))
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
           "MLFLOW_REGISTRY_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    result = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
