from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from mlflow_app_agent.apps import materialize, verify
from mlflow_app_agent.cli import main
from mlflow_app_agent.errors import ManifestMismatchError

from .conftest import LoggedVersion


@pytest.fixture
def app(tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path) -> Path:
    return materialize(echo_version.uri, tmp_path / "app")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_verify_passes_then_names_a_one_byte_change(app: Path) -> None:
    code, out = run("verify", str(app))
    assert code == 0 and "OK" in out
    agent = app / "model" / "data" / "agent" / "agent.py"
    data = bytearray(agent.read_bytes())
    data[10] ^= 1
    agent.write_bytes(bytes(data))
    code, out = run("verify", str(app))
    assert code == 1
    assert "changed: model/data/agent/agent.py" in out
    with pytest.raises(ManifestMismatchError) as info:
        verify(app)
    assert info.value.problems == ["changed: model/data/agent/agent.py"]


def test_verify_names_missing_and_extra_files(app: Path) -> None:
    (app / "README.md").unlink()
    (app / "model" / "notes.txt").write_text("added later")
    problems = verify(app, raise_on_mismatch=False)
    assert problems == ["missing: README.md", "extra: model/notes.txt"]
    code, out = run("verify", str(app))
    assert code == 1 and "missing: README.md" in out and "extra: model/notes.txt" in out


def test_verify_same_size_edit_and_symlink(app: Path) -> None:
    target = app / "app.yaml"
    text = target.read_text()
    target.write_text(text.replace("databricks", "databrickz"))
    target2 = app / "uv.lock"
    target2.unlink()
    target2.symlink_to(app / "README.md")
    problems = verify(app, raise_on_mismatch=False)
    assert problems == ["changed: app.yaml", "changed: uv.lock (is a symlink)"]


def test_verify_names_the_install_mode(app: Path) -> None:
    code, out = run("verify", str(app), "--installer", "uv")
    assert code == 0, out
    code, out = run("verify", str(app), "--installer", "pip")
    assert code == 1
    assert out.strip().splitlines() == [
        f"mode: {app} is a uv mode (pyproject.toml + uv.lock) app directory, not pip mode "
        "(requirements.txt)",
        f"Error: {app} is a uv mode (pyproject.toml + uv.lock) app directory, not pip mode "
        "(requirements.txt)"]
    # a requirements.txt added later would make Apps install the dir with pip
    (app / "requirements.txt").write_text("requests\n")
    assert verify(app, raise_on_mismatch=False) == [
        "mode: materialized for uv mode (pyproject.toml + uv.lock), but Apps would install it "
        "as pip mode (requirements.txt)", "extra: requirements.txt"]


def test_verify_edited_or_missing_manifest(app: Path, tmp_path: Path) -> None:
    manifest = json.loads((app / "MANIFEST.json").read_text())
    manifest["files"]["app.yaml"]["sha256"] = "0" * 64
    (app / "MANIFEST.json").write_text(json.dumps(manifest))
    assert verify(app, raise_on_mismatch=False) == ["changed: app.yaml"]
    (app / "MANIFEST.json").write_text("{not json")
    code, out = run("verify", str(app))
    assert code == 1 and "not valid JSON" in out
    (app / "MANIFEST.json").unlink()
    code, out = run("verify", str(app))
    assert code == 1 and "no MANIFEST.json" in out
    code, out = run("verify", str(tmp_path / "nowhere"))
    assert code == 1 and "not a directory" in out


def test_materialize_cli(tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path) -> None:
    code, out = run("materialize", echo_version.uri, str(tmp_path / "app"))
    assert code == 0, out
    assert str(tmp_path / "app") in out
    assert verify(tmp_path / "app") == []
    code, out = run("materialize", echo_version.uri, str(tmp_path / "app"))
    assert code == 1 and "not empty; pass --force" in out and "Traceback" not in out
    code, out = run("materialize", echo_version.uri, str(tmp_path / "app"), "--force")
    assert code == 0, out
    code, out = run("materialize", "models:/missing-model/3", str(tmp_path / "other"))
    assert code == 1 and "missing-model" in out and "Traceback" not in out
    assert not (tmp_path / "other").exists()
