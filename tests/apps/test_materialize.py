from __future__ import annotations

import importlib.metadata
import json
import os
import tomllib
from pathlib import Path

import pytest
import yaml

from mlflow_app_agent.apps import materialize, verify
from mlflow_app_agent.apps.build.manifest import MANIFEST_FILE
from mlflow_app_agent.apps.build.materialize import BuildOptions
from mlflow_app_agent.apps.build.wheel import wheel_filename
from mlflow_app_agent.errors import MaterializeError, ModelLoadError, TargetExistsError

from .conftest import LoggedVersion, model_requirements


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_layout_app_yaml_requirements_and_manifest(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    out = materialize(echo_version.uri, tmp_path / "app")
    files = tree(out)
    assert {"app.yaml", "pyproject.toml", "uv.lock", "MANIFEST.json", "README.md",
            f"wheels/{wheel_filename()}", "model/MLmodel"} <= set(files)
    assert "requirements.txt" not in files  # it would make Apps use pip

    spec = yaml.safe_load(files["app.yaml"])
    assert spec["command"] == ["python", "-m", "mlflow_app_agent.serve", "."]
    env = {e["name"]: e for e in spec["env"]}
    assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": "databricks"}
    assert env["MLFLOW_ACTIVE_MODEL_ID"]["value"] == echo_version.model_id
    assert env["MLFLOW_EXPERIMENT_ID"] == {
        "name": "MLFLOW_EXPERIMENT_ID", "valueFrom": "experiment-1234"}
    assert env["LLM_ENDPOINT"]["valueFrom"] == "serving_endpoint-my-llm"
    # a secret is only ever referenced, never written
    assert env["API_KEY"] == {"name": "API_KEY", "valueFrom": "secret-team-api-key"}

    project = tomllib.loads(files["pyproject.toml"].decode())
    assert project["project"]["requires-python"] == "==3.11.*"
    deps = project["project"]["dependencies"]
    mlflow_version = importlib.metadata.version("mlflow")
    # the model's own requirements, but mlflow-skinny for mlflow; the toolkit as a path
    assert deps[:3] == [f"mlflow-skinny=={mlflow_version}",
                        *model_requirements()[1:]]
    assert project["tool"]["uv"]["sources"]["mlflow-app-agent"] == {
        "path": f"wheels/{wheel_filename()}"}
    lock = tomllib.loads(files["uv.lock"].decode())
    assert lock["requires-python"] == "==3.11.*"
    locked = {p["name"]: p for p in lock["package"]}
    assert {"fastapi", "uvicorn", "mlflow-skinny", "numpy",
            "opentelemetry-exporter-otlp-proto-http"} <= set(locked)
    assert "mlflow" not in locked and "scikit-learn" not in locked
    assert locked["mlflow-app-agent"]["source"] == {"path": f"wheels/{wheel_filename()}"}

    manifest = json.loads(files["MANIFEST.json"])
    assert manifest["source_uri"] == echo_version.uri
    assert manifest["registered_name"] == echo_version.name
    assert manifest["registered_version"] == echo_version.version
    assert manifest["model_id"] == echo_version.model_id
    assert manifest["flavor"] == "mlflow_app_agent"
    assert manifest["git"]["commit"]
    assert manifest["toolkit_version"]
    deps_record = manifest["dependencies"]
    assert deps_record["installer"] == "uv"
    assert deps_record["target"] == {"python": "3.11", "platform": "x86_64-manylinux_2_35"}
    assert deps_record["exclude_newer"] == lock["options"]["exclude-newer"]
    assert deps_record["mlflow"]["distribution"] == "mlflow-skinny"
    assert set(manifest["files"]) == set(files) - {MANIFEST_FILE}
    assert files["MANIFEST.json"].decode() == json.dumps(
        manifest, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    assert verify(out) == []


def test_same_version_twice_gives_byte_identical_trees(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    a = materialize(echo_version.uri, tmp_path / "a")
    b = materialize(echo_version.uri, tmp_path / "b")
    assert tree(a) == tree(b)
    modes = {os.stat(p).st_mode & 0o777 for p in a.rglob("*") if p.is_file()}
    assert modes == {0o644}


@pytest.mark.parametrize("form", ["alias", "model_id", "runs", "local_dir", "app_dir"])
def test_every_uri_form_yields_the_same_model(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path, form: str
) -> None:
    import mlflow

    reference = materialize(echo_version.uri, tmp_path / "ref")
    if form == "alias":
        mlflow.MlflowClient().set_registered_model_alias(
            echo_version.name, "champion", echo_version.version)
        uri = f"models:/{echo_version.name}@champion"
    elif form == "model_id":
        uri = f"models:/{echo_version.model_id}"
    elif form == "runs":
        run = mlflow.MlflowClient().get_logged_model(echo_version.model_id).source_run_id
        if run is None:
            with mlflow.start_run() as active:
                mlflow.log_artifacts(str(reference / "model"), "agent")
            run = active.info.run_id
        uri = f"runs:/{run}/agent"
    elif form == "local_dir":
        uri = str(reference / "model")
    else:
        uri = str(reference)
    out = materialize(uri, tmp_path / form)
    ref_files, got = tree(reference), tree(out)
    def model_files(files: dict[str, bytes]) -> dict[str, bytes]:
        # runs:/ and models:/m-<id> name no registered version: no registered_model_meta
        skip = "model/registered_model_meta" if form in ("runs", "model_id") else None
        return {k: v for k, v in files.items() if k.startswith("model/") and k != skip}

    assert model_files(got) == model_files(ref_files)
    assert got["app.yaml"] == ref_files["app.yaml"]
    manifest = json.loads(got["MANIFEST.json"])
    if form == "alias":
        assert manifest["registered_version"] == echo_version.version
    if form == "app_dir":  # the app dir carries its registry facts along
        assert manifest["registered_name"] == echo_version.name
        assert manifest["source_uri"] == echo_version.uri
    assert verify(out) == []


def test_plain_pyfunc_responses_agent(
    tracking_uri: str, plain_version: LoggedVersion, tmp_path: Path
) -> None:
    out = materialize(plain_version.uri, tmp_path / "plain")
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["flavor"] == "python_function"
    assert manifest["model_id"] == plain_version.model_id
    spec = yaml.safe_load((out / "app.yaml").read_text())
    assert spec["command"][-1] == "."
    assert [e["name"] for e in spec["env"]] == ["MLFLOW_TRACKING_URI", "MLFLOW_ACTIVE_MODEL_ID"]
    assert verify(out) == []


def test_refuses_non_empty_target_unless_forced(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    target = tmp_path / "app"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(TargetExistsError, match="not empty"):
        materialize(echo_version.uri, target)
    assert (target / "keep.txt").read_text() == "mine"
    materialize(echo_version.uri, target, force=True)
    assert not (target / "keep.txt").exists()
    assert verify(target) == []
    assert leftovers(tmp_path) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(TargetExistsError, match="not a directory"):
        materialize(echo_version.uri, tmp_path / "file", force=True)


def test_failure_leaves_nothing(tracking_uri: str, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        materialize("models:/no-such-model/1", tmp_path / "app")
    assert list(tmp_path.iterdir()) == []


def test_failure_with_force_keeps_the_previous_directory(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    out = materialize(echo_version.uri, tmp_path / "app")
    before = tree(out)
    with pytest.raises(ModelLoadError):
        materialize("models:/no-such-model/1", out, force=True)
    assert tree(out) == before
    assert leftovers(tmp_path) == []


def _model_copy(echo_version: LoggedVersion, tmp_path: Path) -> Path:
    ref = materialize(echo_version.uri, tmp_path / "ref")
    src = tmp_path / "src"
    os.rename(ref / "model", src)
    return src


def test_rejects_symlink_escaping_the_model(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    src = _model_copy(echo_version, tmp_path)
    secret = tmp_path / "outside.txt"
    secret.write_text("not yours")
    (src / "data" / "link.txt").symlink_to(secret)
    with pytest.raises(MaterializeError, match="data/link.txt.*outside"):
        materialize(str(src), tmp_path / "app")
    assert not (tmp_path / "app").exists()
    (src / "data" / "link.txt").unlink()
    (src / "data" / "up").symlink_to(Path("..") / "..", target_is_directory=True)
    with pytest.raises(MaterializeError, match="data/up"):
        materialize(str(src), tmp_path / "app")


def test_internal_symlink_becomes_a_real_file(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    src = _model_copy(echo_version, tmp_path)
    (src / "data" / "alias.py").symlink_to(Path("agent") / "agent.py")
    out = materialize(str(src), tmp_path / "app")
    copied = out / "model" / "data" / "alias.py"
    assert not copied.is_symlink()
    assert copied.read_bytes() == (src / "data" / "agent" / "agent.py").read_bytes()


def test_reports_files_over_the_apps_limit(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    src = _model_copy(echo_version, tmp_path)
    (src / "weights.bin").write_bytes(b"\0" * (10 * 1024 * 1024 + 1))
    with pytest.raises(MaterializeError, match=r"10 MiB.*model/weights\.bin \(10\.0 MiB\)"):
        materialize(str(src), tmp_path / "app")
    assert not (tmp_path / "app").exists()
    assert leftovers(tmp_path) == []


def test_not_a_model(tracking_uri: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="neither a model directory"):
        materialize(str(tmp_path / "empty"), tmp_path / "app")
    with pytest.raises(ModelLoadError, match="missing' is not a model URI and does not exist"):
        materialize(str(tmp_path / "missing"), tmp_path / "app")
    (tmp_path / "agent.py").write_text("x = 1\n")
    with pytest.raises(MaterializeError, match="is a Python file, not a model; log it first"):
        materialize(str(tmp_path / "agent.py"), tmp_path / "app")
    (tmp_path / "agent.py").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_target_inside_the_model_is_refused(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    src = _model_copy(echo_version, tmp_path)
    before = tree(src)
    with pytest.raises(MaterializeError, match="inside the model directory"):
        materialize(str(src), src / "app")
    assert tree(src) == before


def test_progress_messages(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    said: list[str] = []
    materialize(echo_version.uri, tmp_path / "app", progress=said.append)
    assert said[0] == f"Downloading {echo_version.uri} ..."
    assert any("model ready:" in m and "files" in m for m in said)
    assert said[-1].startswith("Materialized")


def test_a_target_that_cannot_be_created_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a directory\n")
    target = tmp_path / "notes.txt" / "app"
    with pytest.raises(MaterializeError, match=r"cannot create .*notes\.txt/app: "
                                               r".*notes\.txt: File exists") as info:
        materialize("models:/never-fetched/1", target)
    assert "Errno" not in info.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_model_that_is_not_an_agent_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "sk"
    model.mkdir()
    (model / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    sklearn_version: 1.5.0\n")
    (model / "model.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(MaterializeError, match="neither the mlflow_app_agent nor the "
                                               "python_function flavor"):
        materialize(str(model), tmp_path / "app")
    assert not (tmp_path / "app").exists() and leftovers(tmp_path) == []


def test_pip_mode_pins_the_closure_for_the_target(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    out = materialize(echo_version.uri, tmp_path / "app",
                      options=BuildOptions(installer="pip"))
    assert not (out / "pyproject.toml").exists() and not (out / "uv.lock").exists()
    lines = (out / "requirements.txt").read_text().splitlines()
    assert lines[0].startswith("# Generated by mlflow-app-agent materialize")
    assert "Python 3.11 on x86_64-manylinux_2_35" in lines[1]
    reqs = [ln for ln in lines if ln and not ln.startswith(("#", " "))]
    assert f"./wheels/{wheel_filename()}" in reqs
    pinned = [r for r in reqs if not r.startswith("./")]
    assert pinned and all("==" in r for r in pinned), pinned
    names = {r.split("==")[0] for r in pinned}
    assert {"mlflow-skinny", "fastapi", "numpy", "opentelemetry-exporter-otlp-proto-http"} <= names
    assert "mlflow" not in names and "scikit-learn" not in names
    assert json.loads((out / MANIFEST_FILE).read_text())["dependencies"]["installer"] == "pip"
    assert verify(out) == []


def test_full_mlflow_logged_or_asked_is_kept(
    tracking_uri: str, echo_version: LoggedVersion, tmp_path: Path
) -> None:
    src = _model_copy(echo_version, tmp_path)
    mlmodel = yaml.safe_load((src / "MLmodel").read_text())
    mlmodel["flavors"]["mlflow_app_agent"]["full_mlflow"] = True
    (src / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    out = materialize(str(src), tmp_path / "full", options=BuildOptions(installer="pip"))
    names = {ln.split("==")[0] for ln in (out / "requirements.txt").read_text().splitlines()}
    assert "mlflow" in names
    record = json.loads((out / MANIFEST_FILE).read_text())["dependencies"]["mlflow"]
    assert record == {"distribution": "mlflow", "decided_by": "log_model(full_mlflow=True)"}
    # and materialize can override what was logged
    lean = materialize(str(src), tmp_path / "lean",
                       options=BuildOptions(installer="pip", full_mlflow=False))
    names = {ln.split("==")[0] for ln in (lean / "requirements.txt").read_text().splitlines()}
    assert "mlflow" not in names and "mlflow-skinny" in names


def test_app_factory_and_extensions_travel_into_the_app(
    tracking_uri: str, ext_version: LoggedVersion, tmp_path: Path
) -> None:
    out = materialize(ext_version.uri, tmp_path / "app",
                      app_factory="ext_support:wrapping_factory")
    command = yaml.safe_load((out / "app.yaml").read_text())["command"]
    assert command[-3:] == [".", "--app-factory", "ext_support:wrapping_factory"]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["app_factory"] == "ext_support:wrapping_factory"
    assert manifest["dependencies"]["installer"] == "uv"
    assert (out / "pyproject.toml").is_file() and (out / "uv.lock").is_file()
    assert (out / "model" / "code" / "ext_support.py").is_file()
    assert verify(out) == []

    with pytest.raises(MaterializeError, match="module 'elsewhere' is not part of the logged"):
        materialize(ext_version.uri, tmp_path / "bad", app_factory="elsewhere:factory")
    assert not (tmp_path / "bad").exists() and leftovers(tmp_path) == []
