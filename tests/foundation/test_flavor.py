from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)

import mlflow_app_agent
from mlflow_app_agent import Agent
from mlflow_app_agent.errors import MissingDependencyError, SignatureError

from .conftest import TOKEN, git

REQUEST = {"input": [{"role": "user", "content": "ping pong"}]}
PIP = ["mlflow-app-agent", "mlflow-skinny"]  # explicit: skips the ~2 s inference subprocess


def check_pyfunc(model_uri: str, expected_text: str = "ping pong") -> None:
    model = mlflow.pyfunc.load_model(model_uri)
    response = model.predict(REQUEST)
    ResponsesAgentResponse.model_validate(response)
    assert response["output"][0]["content"][0]["text"] == expected_text
    events = list(model.predict_stream(REQUEST))
    for event in events:
        ResponsesAgentStreamEvent.model_validate(event)
    assert events[-1]["type"] == "response.output_item.done"
    assert "".join(e["delta"] for e in events if "delta" in e) == expected_text


def every_byte_under(*roots: Path) -> bytes:
    data = b""
    for root in roots:
        for file in root.rglob("*"):
            if file.is_file():
                data += file.read_bytes()
    return data


def test_detached_dirty_checkout_with_token_remote(
    repo: Path, tracking_uri: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 'done when' of the foundation: provenance, registry, aliases, no leaked token."""
    git(repo, "checkout", "-q", "--detach")
    monkeypatch.setenv("GITHUB_REF_NAME", "release/7")
    agent_file = repo / "agent.py"
    agent_file.write_text(agent_file.read_text() + "\n# experiment: shorter answers\n")

    info = mlflow_app_agent.log_model(
        str(agent_file), name="support", registered_model_name=unique_name, pip_requirements=PIP
    )
    assert info.registered_model_version == 1
    mlflow.MlflowClient().set_registered_model_alias(unique_name, "champion", "1")
    check_pyfunc(f"models:/{unique_name}/1")
    check_pyfunc(f"models:/{unique_name}@champion")

    head = git(repo, "rev-parse", "HEAD")
    tags = mlflow.MlflowClient().get_logged_model(info.model_id).tags
    assert tags["mlflow.source.git.commit"] == head
    assert tags["mlflow.source.git.branch"] == "release/7"
    assert tags["mlflow.source.git.repoURL"] == "https://github.com/org/agents.git"
    assert tags["mlflow.source.git.dirty"] == "true"
    version = mlflow.MlflowClient().get_model_version(unique_name, "1")
    assert version.tags["mlflow.source.git.commit"] == head

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{unique_name}/1"))
    diff = (local / "git" / "diff.patch").read_text()
    assert "+# experiment: shorter answers" in diff
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    conf = mlmodel["flavors"]["mlflow_app_agent"]
    assert conf["git"]["commit"] == head and conf["git"]["detached"] is True
    assert conf["git"]["dirty"] is True and conf["git"]["branch"] == "release/7"
    assert conf["loader"] == "code" and conf["agent_name"] == "echo"
    assert conf["interfaces"] == ["invoke", "stream"]
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow_app_agent.flavor"
    assert mlmodel["metadata"]["task"] == "agent/v1/responses"
    assert mlmodel["signature"]["inputs"] and mlmodel["signature"]["outputs"]

    db_path = Path(tracking_uri.removeprefix("sqlite:///"))
    store_bytes = db_path.read_bytes() + every_byte_under(db_path.parent)
    assert TOKEN.encode() not in store_bytes
    assert TOKEN.encode() not in every_byte_under(local)


def test_plain_string_agent_fails_at_log_time_and_logs_nothing(
    tracking_uri: str, unique_name: str
) -> None:
    agent = Agent("stringy")

    @agent.invoke_method
    def invoke(request: ResponsesAgentRequest) -> str:
        return "hello"

    client = mlflow.MlflowClient()
    before = len(client.search_logged_models(experiment_ids=["0"]))
    with pytest.raises(SignatureError, match="invoke output is a str, not a response"):
        mlflow_app_agent.log_model(agent, registered_model_name=unique_name, git="off")
    assert len(client.search_logged_models(experiment_ids=["0"])) == before
    assert client.search_registered_models(f"name='{unique_name}'") == []


def test_bad_item_shape_names_the_field(tracking_uri: str) -> None:
    agent = Agent("bad")

    @agent.invoke_method
    def invoke(request: ResponsesAgentRequest) -> dict[str, Any]:
        return {"output": [{"type": "message", "role": "assistant", "content": "no id"}]}

    with pytest.raises(SignatureError, match="response.output"):
        mlflow_app_agent.log_model(agent, git="off")


def test_stream_events_are_checked(tracking_uri: str) -> None:
    agent = Agent("badstream")

    @agent.stream_method
    def stream(request: ResponsesAgentRequest) -> Any:
        yield {"type": "response.output_text.delta", "item_id": "x"}  # no delta

    with pytest.raises(SignatureError, match=r"stream event #0 .*delta"):
        mlflow_app_agent.log_model(agent, git="off")


def test_pickled_agent_object_round_trip(tmp_path: Path, tracking_uri: str) -> None:
    agent = Agent("shout")

    @agent.invoke_method
    async def invoke(request: ResponsesAgentRequest) -> dict[str, Any]:
        text = str(request.input[-1].content).upper()
        return {"output": [{"type": "message", "id": "1", "role": "assistant",
                            "content": [{"type": "output_text", "text": text}]}]}

    info = mlflow_app_agent.log_model(agent, git="off", pip_requirements=PIP)
    loaded = mlflow_app_agent.load_model(info.model_uri)
    assert loaded.name == "shout"
    assert loaded.invoke(REQUEST)["output"][0]["content"][0]["text"] == "PING PONG"
    model = mlflow.pyfunc.load_model(info.model_uri)
    assert model.predict(REQUEST)["output"][0]["content"][0]["text"] == "PING PONG"
    assert list(model.predict_stream(REQUEST))[0]["item"]["content"][0]["text"] == "PING PONG"


class Greeter(ResponsesAgent):
    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        return ResponsesAgentResponse(output=[self.create_text_output_item("hello", "g1")])


def test_responses_agent_instance(tmp_path: Path) -> None:
    import sys

    import cloudpickle

    # A class from a local module is pickled by reference; unlogged, that is reported.
    with pytest.raises(MissingDependencyError, match="foundation"):
        mlflow_app_agent.save_model(Greeter(), tmp_path / "m0", git="off", pip_requirements=PIP)
    # Defined in a notebook (or registered by value), it travels inside the pickle.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        mlflow_app_agent.save_model(Greeter(), tmp_path / "m", git="off", pip_requirements=PIP)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    assert model.predict(REQUEST)["output"][0]["content"][0]["text"] == "hello"
    conf = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"]
    assert conf["mlflow_app_agent"]["loader"] == "pickle"
    assert conf["mlflow_app_agent"]["native_interfaces"] == ["invoke"]


def write_tool_agent(directory: Path) -> Path:
    (directory / "shout_tools.py").write_text("def shout(text):\n    return text.upper()\n")
    agent_file = directory / "tool_agent.py"
    agent_file.write_text(
        "import mlflow\n"
        "import shout_tools\n"
        "from mlflow_app_agent import Agent\n"
        "agent = Agent('tools')\n"
        "@agent.invoke_method\n"
        "def invoke(request):\n"
        "    text = shout_tools.shout(str(request.input[-1].content))\n"
        "    return {'output': [{'type': 'message', 'id': '1', 'role': 'assistant',\n"
        "                        'content': [{'type': 'output_text', 'text': text}]}]}\n"
        "mlflow.models.set_model(agent)\n"
    )
    return agent_file


def test_local_module_not_logged_is_reported_at_log_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_file = write_tool_agent(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, by accident
    with pytest.raises(MissingDependencyError, match="shout_tools"):
        mlflow_app_agent.save_model(str(agent_file), tmp_path / "m1", git="off")
    assert not (tmp_path / "m1").exists()


def test_code_paths_are_honoured(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    agent_file = write_tool_agent(src)
    mlflow_app_agent.save_model(
        str(agent_file), tmp_path / "m", code_paths=[str(src / "shout_tools.py")], git="off",
        pip_requirements=PIP,
    )
    assert (tmp_path / "m" / "code" / "shout_tools.py").is_file()
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    assert model.predict(REQUEST)["output"][0]["content"][0]["text"] == "PING PONG"


def test_pickled_function_using_a_local_module_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "helper_mod.py").write_text("def f(request):\n    return {'output': []}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    helper_mod = importlib.import_module("helper_mod")
    agent = Agent("pickled")
    agent.invoke_method(helper_mod.f)
    with pytest.raises(MissingDependencyError, match="helper_mod"):
        mlflow_app_agent.save_model(agent, tmp_path / "m", git="off")


def test_resources_and_metadata_are_recorded(tmp_path: Path) -> None:
    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    mlflow_app_agent.save_model(
        str(echo), tmp_path / "m", git="off", pip_requirements=PIP,
        metadata={"team": "search"},
        resources=[
            {"kind": "serving_endpoint", "endpoint_name": "llm", "env": "LLM_ENDPOINT"},
            {"kind": "secret", "scope": "tools", "key": "api", "env": "TOOL_KEY"},
        ],
        input_example={"input": [{"role": "user", "content": "custom example"}]},
    )
    mlmodel = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert mlmodel["metadata"] == {"team": "search", "task": "agent/v1/responses"}
    kinds = [r["kind"] for r in mlmodel["flavors"]["mlflow_app_agent"]["resources"]]
    assert kinds == ["serving_endpoint", "secret"]
    assert mlmodel["resources"]["databricks"]["serving_endpoint"] == [{"name": "llm"}]
    example = json.loads((tmp_path / "m" / "input_example.json").read_text())
    assert example["input"][0]["content"] == "custom example"


def test_save_model_refuses_a_non_empty_path(tmp_path: Path) -> None:
    from mlflow_app_agent.errors import ModelLoadError

    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    with pytest.raises(ModelLoadError, match="not empty"):
        mlflow_app_agent.save_model(str(echo), tmp_path / "m", git="off", pip_requirements=PIP)


def test_agent_file_errors(tmp_path: Path) -> None:
    from mlflow_app_agent.errors import AgentDefinitionError

    with pytest.raises(AgentDefinitionError, match="not an existing .py file"):
        mlflow_app_agent.save_model(str(tmp_path / "nope.py"), tmp_path / "m", git="off")
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('bad config')\n")
    with pytest.raises(AgentDefinitionError, match="bad config"):
        mlflow_app_agent.save_model(str(broken), tmp_path / "m", git="off")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(AgentDefinitionError, match="set_model"):
        mlflow_app_agent.save_model(str(empty), tmp_path / "m", git="off")
    with pytest.raises(AgentDefinitionError, match="does not exist"):
        mlflow_app_agent.save_model(str(broken), tmp_path / "m", code_paths=["/nope"])


def test_inferred_requirements_name_the_toolkit(tmp_path: Path) -> None:
    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    mlflow_app_agent.save_model(str(echo), tmp_path / "m", git="off")
    requirements = (tmp_path / "m" / "requirements.txt").read_text()
    assert "mlflow-app-agent==" in requirements
    # MLflow records what runs while it predicts on the input example: the flavor's own
    # loading and predict must not import pandas (and pin it, with numpy, for every app)
    names = {line.split("==")[0].lower() for line in requirements.splitlines()}
    assert not names & {"pandas", "numpy"}, requirements


def test_pyfunc_predict_takes_the_dataframe_mlflow_may_hand_it() -> None:
    import pandas

    from mlflow_app_agent.model.pyfunc import PyfuncWrapper

    frame = pandas.DataFrame({"input": [[{"role": "user", "content": "hi"}]]})
    assert PyfuncWrapper._to_dict(frame) == {"input": [{"role": "user", "content": "hi"}]}
    assert PyfuncWrapper._to_dict(REQUEST) is REQUEST


def write_configured_agent(directory: Path) -> Path:
    agent_file = directory / "configured.py"
    agent_file.write_text(
        "import mlflow, pydantic\n"
        "from mlflow_app_agent import Agent, get_config\n"
        "class Settings(pydantic.BaseModel):\n"
        "    greeting: str\n"
        "    shout: bool = False\n"
        "agent = Agent('configured')\n"
        "agent.config_schema = Settings\n"
        "@agent.invoke_method\n"
        "def invoke(request):\n"
        "    cfg = get_config(Settings)\n"
        "    text = f'{cfg.greeting} {request.input[-1].content}'\n"
        "    text = text.upper() if cfg.shout else text\n"
        "    return {'output': [{'type': 'message', 'id': '1', 'role': 'assistant',\n"
        "                        'content': [{'type': 'output_text', 'text': text}]}]}\n"
        "mlflow.models.set_model(agent)\n"
    )
    return agent_file


def test_model_config_is_stored_validated_and_overridable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow_app_agent import agent_config as config
    from mlflow_app_agent.errors import ConfigError

    agent_file = write_configured_agent(tmp_path)
    try:
        with pytest.raises(ConfigError, match="config key 'greeting'"):
            mlflow_app_agent.save_model(str(agent_file), tmp_path / "bad", git="off",
                                        model_config={"shout": True}, pip_requirements=PIP)
        assert not (tmp_path / "bad").exists()
        mlflow_app_agent.save_model(str(agent_file), tmp_path / "m", git="off",
                                    model_config={"greeting": "hi"}, pip_requirements=PIP)
        loaded = mlflow_app_agent.load_agent(tmp_path / "m")
        assert loaded.model_config == {"greeting": "hi"}
        assert loaded.agent.invoke(REQUEST)["output"][0]["content"][0]["text"] == "hi ping pong"
        monkeypatch.setenv("AGENT_CONFIG__SHOUT", "true")  # per deployment, no re-logging
        model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
        assert model.predict(REQUEST)["output"][0]["content"][0]["text"] == "HI PING PONG"
    finally:
        config.deactivate_config()


def test_full_mlflow_is_recorded_for_materialize(tmp_path: Path) -> None:
    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    for full in (False, True):
        path = tmp_path / f"m-{full}"
        mlflow_app_agent.save_model(str(echo), path, git="off", full_mlflow=full,
                                    pip_requirements=["mlflow", "cloudpickle"])
        conf = yaml.safe_load((path / "MLmodel").read_text())["flavors"]["mlflow_app_agent"]
        assert conf["full_mlflow"] is full


def test_scopes_and_compute_are_recorded_for_deploy(tmp_path: Path) -> None:
    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    mlflow_app_agent.save_model(
        str(echo), tmp_path / "m", git="off", pip_requirements=PIP,
        resources=[{"kind": "genie_space", "space_id": "g1", "auth": "user"},
                   {"kind": "serving_endpoint", "endpoint_name": "llm", "auth": "both"}],
        user_api_scopes=["files.files"], compute_size="LARGE", instances="2:4",
    )
    conf = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())["flavors"][
        "mlflow_app_agent"]
    assert conf["deploy"] == {
        "user_api_scopes": ["dashboards.genie", "files.files", "serving.serving-endpoints"],
        "compute_size": "LARGE", "instances": {"min": 2, "max": 4}}
    assert [r.get("auth") for r in conf["resources"]] == ["user", "both"]


def test_bad_scopes_or_compute_are_refused_before_writing(tmp_path: Path) -> None:
    from mlflow_app_agent.errors import ConfigError

    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    for kwargs, message in (({"user_api_scopes": ["genie"]}, "unknown user API scope"),
                            ({"instances": 0}, "each count must be 1-5"),
                            ({"compute_size": "HUGE"}, "compute size 'HUGE'")):
        with pytest.raises(ConfigError, match=message):
            mlflow_app_agent.save_model(str(echo), tmp_path / "m", git="off",
                                        pip_requirements=PIP, **kwargs)
        assert not (tmp_path / "m").exists()


def test_unwrap_python_model_returns_the_agent(tracking_uri: str, unique_name: str) -> None:
    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    info = mlflow_app_agent.log_model(str(echo), registered_model_name=unique_name,
                                      pip_requirements=PIP, git="off")
    for uri in (info.model_uri, f"models:/{unique_name}/1"):
        unwrapped = mlflow.pyfunc.load_model(uri).unwrap_python_model()
        assert isinstance(unwrapped, Agent) and unwrapped.name == "echo"
        assert unwrapped.invoke(REQUEST)["output"][0]["content"][0]["text"] == "ping pong"


def test_save_model_refuses_unknown_keyword_arguments(tmp_path: Path) -> None:
    from mlflow_app_agent.errors import UnknownArgumentError

    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    with pytest.raises(UnknownArgumentError, match=r"unknown keyword argument\(s\) 'signature'; "
                                                   r"it takes agent, path, code_paths, "):
        mlflow_app_agent.save_model(str(echo), tmp_path / "m", signature=None)  # type: ignore[call-arg]
    assert not (tmp_path / "m").exists()  # refused before anything was written
    with pytest.raises(TypeError):  # still a TypeError, as Python's own would be
        mlflow_app_agent.save_model(str(echo), tmp_path / "m", conda_env={})  # type: ignore[call-arg]


def test_the_mlmodel_is_complete_when_mlflow_writes_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Our flavor entry, metadata and resources go in before ``pyfunc.save_model`` writes
    MLmodel; this flavor never rewrites the file afterwards."""
    from mlflow.models import Model

    echo = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
    writes: list[dict[str, Any]] = []
    real_save = Model.save

    def recording_save(self: Model, path: str) -> None:  # the real save, recorded
        writes.append(yaml.safe_load(self.to_yaml()))
        real_save(self, path)

    monkeypatch.setattr(Model, "save", recording_save)
    mlflow_app_agent.save_model(
        str(echo), tmp_path / "m", git="off", pip_requirements=PIP, metadata={"team": "x"},
        resources=[{"kind": "serving_endpoint", "endpoint_name": "llm"}],
    )
    assert writes, "MLmodel was not written through Model.save"
    for doc in writes:  # every write MLflow does already holds all of it
        assert mlflow_app_agent.FLAVOR_NAME in doc["flavors"]
        assert doc["metadata"]["task"] == "agent/v1/responses" and doc["metadata"]["team"] == "x"
        assert doc["resources"]["databricks"]["serving_endpoint"] == [{"name": "llm"}]
    on_disk = yaml.safe_load((tmp_path / "m" / "MLmodel").read_text())
    assert on_disk["flavors"] == writes[-1]["flavors"]
