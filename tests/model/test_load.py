from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse

import mlflow_app_agent
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.model.load import download_model, load_agent

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
REQUEST = {"input": [{"role": "user", "content": "hello"}]}
PIP = ["mlflow-app-agent", "mlflow-skinny"]


def test_registry_uris_resolve_name_version_and_ids(tracking_uri: str, unique_name: str) -> None:
    info = mlflow_app_agent.log_model(
        str(ECHO), registered_model_name=unique_name, pip_requirements=PIP, git="off",
        resources=[{"kind": "experiment", "experiment_id": "42", "env": "MLFLOW_EXPERIMENT_ID"}],
    )
    mlflow.MlflowClient().set_registered_model_alias(unique_name, "prod", "1")
    for uri in (f"models:/{unique_name}/1", f"models:/{unique_name}@prod",
                f"models:/{unique_name}/latest"):
        loaded = load_agent(uri)
        assert loaded.registered_name == unique_name and loaded.registered_version == "1"
        assert loaded.model_id == info.model_id and loaded.flavor == "mlflow_app_agent"
        assert loaded.model_uri == uri and loaded.name == "echo"
        assert loaded.resources[0].experiment_id == "42"
    by_id = load_agent(info.model_uri)
    assert by_id.model_id == info.model_id and by_id.registered_name is None
    assert by_id.agent.invoke(REQUEST)["output"][0]["content"][0]["text"] == "hello"


def test_materialized_app_dir_needs_no_registry(tmp_path: Path, tracking_uri: str,
                                                unique_name: str) -> None:
    mlflow_app_agent.log_model(str(ECHO), registered_model_name=unique_name, pip_requirements=PIP,
                               git="off")
    app = tmp_path / "app"
    source = download_model(f"models:/{unique_name}/1", app / "model")
    (app / "MANIFEST.json").write_text(json.dumps(source.manifest_fields()))
    mlflow.set_tracking_uri("http://127.0.0.1:9")  # nothing listens there
    try:
        loaded = load_agent(app)
    finally:
        mlflow.set_tracking_uri(tracking_uri)
    assert loaded.registered_name == unique_name and loaded.registered_version == "1"
    assert loaded.agent.invoke(REQUEST)["output"][0]["content"][0]["text"] == "hello"


class Plain(ResponsesAgent):
    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        return ResponsesAgentResponse(output=[self.create_text_output_item("plain", "p1")])


def test_plain_pyfunc_responses_agent(tmp_path: Path) -> None:
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        mlflow.pyfunc.save_model(tmp_path / "m", python_model=Plain(), pip_requirements=PIP)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    loaded = load_agent(tmp_path / "m")
    assert loaded.flavor == "python_function" and loaded.name == "Plain"
    assert loaded.agent.invoke(REQUEST)["output"][0]["content"][0]["text"] == "plain"


def test_non_agent_pyfunc_is_refused(tmp_path: Path) -> None:
    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return model_input

    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Doubler(), pip_requirements=PIP)
    with pytest.raises(ModelLoadError, match="not a ResponsesAgent"):
        load_agent(tmp_path / "m")


@pytest.mark.parametrize("location", ["echo-agent", "/definitely/not/here"])
def test_bad_locations(location: str) -> None:
    with pytest.raises(ModelLoadError, match="not a model URI"):
        load_agent(location)


def test_unknown_registry_entries(tracking_uri: str, unique_name: str) -> None:
    with pytest.raises(ModelLoadError, match="cannot resolve"):
        load_agent(f"models:/{unique_name}/3")
    with pytest.raises(ModelLoadError, match="cannot resolve"):
        load_agent(f"models:/{unique_name}@nope")


def test_directory_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="neither a model directory"):
        load_agent(tmp_path)


def test_download_model_copies_a_local_dir(tmp_path: Path) -> None:
    mlflow_app_agent.save_model(str(ECHO), tmp_path / "m", pip_requirements=PIP, git="off")
    source = download_model(str(tmp_path / "m"), tmp_path / "copy")
    assert (tmp_path / "copy" / "MLmodel").is_file() and source.local_path == tmp_path / "copy"
    assert source.model_uri == str(tmp_path / "m")  # where it came from, not the copy
    shutil.rmtree(tmp_path / "m")
    assert load_agent(tmp_path / "copy").agent.invoke(REQUEST)["output"]


def test_latest_of_a_model_without_versions(tracking_uri: str, unique_name: str) -> None:
    mlflow.MlflowClient().create_registered_model(unique_name)
    with pytest.raises(ModelLoadError, match=f"registered model '{unique_name}' has no versions"):
        load_agent(f"models:/{unique_name}/latest")


def test_runs_uris_load_and_name_what_is_missing(tracking_uri: str) -> None:
    with mlflow.start_run() as run:
        info = mlflow_app_agent.log_model(str(ECHO), name="agent", pip_requirements=PIP,
                                          git="off")
        mlflow.log_text("not a model\n", "notes/readme.txt")
    run_id = run.info.run_id
    loaded = load_agent(f"runs:/{run_id}/agent")
    assert loaded.run_id == run_id and loaded.model_id == info.model_id
    assert loaded.registered_name is None
    assert loaded.agent.invoke(REQUEST)["output"][0]["content"][0]["text"] == "hello"
    with pytest.raises(ModelLoadError, match=r"runs:/.*/notes' is not an MLflow model "
                                             r"\(no MLmodel file\)"):
        load_agent(f"runs:/{run_id}/notes")
    with pytest.raises(ModelLoadError, match=r"cannot download 'runs:/0123456789abcdef/agent'"):
        load_agent("runs:/0123456789abcdef/agent")


def test_a_model_of_another_flavor_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "sk"
    model.mkdir()
    (model / "MLmodel").write_text(
        "flavors:\n  sklearn:\n    pickled_model: model.pkl\n    sklearn_version: 1.5.0\n")
    with pytest.raises(ModelLoadError, match="has neither the mlflow_app_agent nor a pyfunc"):
        load_agent(model)


def test_a_pyfunc_model_that_does_not_load_names_the_cause(tmp_path: Path) -> None:
    import sys

    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        mlflow.pyfunc.save_model(tmp_path / "m", python_model=Plain(), pip_requirements=PIP)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    (tmp_path / "m" / "python_model.pkl").write_bytes(b"definitely not a pickle")
    with pytest.raises(ModelLoadError, match=r"loading .*m with mlflow.pyfunc failed"):
        load_agent(tmp_path / "m")


def test_a_store_mlflow_refuses_is_a_model_load_error(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain directory as tracking URI: MLflow refuses the file store when the client is
    # created. One clear error naming the URI, not an MlflowException traceback.
    from mlflow_app_agent.model.load import download_model

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    mlflow.set_tracking_uri(str(tmp_path / "store"))
    mlflow.set_registry_uri(str(tmp_path / "store"))
    with pytest.raises(ModelLoadError, match=r"cannot resolve 'models:/echo/1': .*file"):
        download_model("models:/echo/1", tmp_path / "out")


def test_registered_names_with_quotes_and_spaces(tracking_uri: str,
                                                          unique_name: str) -> None:
    name = f"it's \"{unique_name}\" team"  # ("@" MLflow itself cannot download)
    info = mlflow_app_agent.log_model(str(ECHO), registered_model_name=name, pip_requirements=PIP,
                                      git="off")
    mlflow.MlflowClient().set_registered_model_alias(name, "prod", "1")
    for uri in (f"models:/{name}/1", f"models:/{name}@prod", f"models:/{name}/latest"):
        loaded = load_agent(uri)
        assert loaded.registered_name == name and loaded.registered_version == "1", uri
        assert loaded.model_id == info.model_id
    with pytest.raises(ModelLoadError, match="cannot resolve"):
        load_agent(f"models:/{name}@nope")


def test_loading_a_model_that_declares_no_resources_skips_their_models(tmp_path: Path) -> None:
    """The resource kinds' pydantic models cost a server's start ~10 ms to build: a model
    that declares none (most) never imports them; one that declares some gets them parsed."""
    import subprocess
    import sys

    mlflow_app_agent.save_model(str(ECHO), tmp_path / "plain", pip_requirements=PIP, git="off")
    mlflow_app_agent.save_model(
        str(ECHO), tmp_path / "declared", pip_requirements=PIP, git="off",
        resources=[{"kind": "experiment", "experiment_id": "42", "env": "MLFLOW_EXPERIMENT_ID"}],
    )
    code = (
        "import sys\n"
        "import mlflow_app_agent.server.app\n"
        "from mlflow_app_agent.model.load import load_agent\n"
        "loaded = load_agent(sys.argv[1])\n"
        "print('mlflow_app_agent.resources' in sys.modules, "
        "[r.experiment_id for r in loaded.resources])\n"
    )
    outs = [subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], text=True,
                           capture_output=True, timeout=120) for name in ("plain", "declared")]
    assert [o.stdout.strip() for o in outs] == ["False []", "True ['42']"], outs[0].stderr
