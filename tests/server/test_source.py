"""What the server serves: agent objects, agent files (``agent.py[:name]``), model dirs and
``LoadedAgent``s resolve to a ``ServedAgent``; every way a location can be wrong is a
``ModelLoadError`` naming it."""

from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mlflow_app_agent import Agent
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.server.source import ServedAgent, is_deferred, load_python_file, resolve

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"
HELLO = {"input": [{"role": "user", "content": "hello there"}]}

AGENT_FILE = """
from mlflow_app_agent import Agent

{name} = Agent({label!r})


@{name}.invoke_method
def _invoke(request):
    return {{"output": [{{"type": "message", "id": "m1", "role": "assistant",
                         "content": [{{"type": "output_text", "text": {label!r}}}]}}]}}
"""


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def answer(agent: Agent) -> str:
    return str(agent.invoke(HELLO)["output"][0]["content"][0]["text"])


def test_objects_resolve_at_once_and_locations_are_deferred(tmp_path: Path) -> None:
    agent = Agent("obj")

    @agent.invoke_method
    def _invoke(request: object) -> dict[str, object]:
        return {"output": []}

    served = resolve(agent)
    assert served.agent is agent and served.model_uri is None and served.git == {}
    assert resolve(served) is served
    assert not is_deferred(agent) and not is_deferred(served)
    assert is_deferred("models:/m/1") and is_deferred(tmp_path / "agent.py")


def test_a_file_with_one_agent_is_served_without_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "solo.py", AGENT_FILE.format(name="bot", label="solo"))
    served = resolve(str(path))
    assert served.agent.name == "solo" and answer(served.agent) == "solo"
    assert served.model_uri is None and served.flavor is None


def test_two_agents_need_a_name_and_name_picks_one(tmp_path: Path) -> None:
    path = write(tmp_path / "pair.py", AGENT_FILE.format(name="first", label="first")
                 + AGENT_FILE.format(name="second", label="second"))
    with pytest.raises(ModelLoadError, match=r"defines 2 agents; name one as .*pair\.py':<var"):
        resolve(path)
    assert answer(resolve(f"{path}:second").agent) == "second"
    # the same spelling without the .py suffix on disk still names the file
    assert answer(load_python_file(path, "first")) == "first"


def test_a_file_may_import_its_sibling_modules(tmp_path: Path) -> None:
    write(tmp_path / "sibling_words_for_source_test.py", "WORD = 'from-sibling'\n")
    path = write(tmp_path / "uses_sibling.py", AGENT_FILE.format(name="bot", label="x")
                 .replace("'x'", "sibling_words_for_source_test.WORD")
                 .replace("from mlflow_app_agent import Agent",
                          "from mlflow_app_agent import Agent\n"
                          "import sibling_words_for_source_test"))
    assert answer(load_python_file(path)) == "from-sibling"


@pytest.mark.parametrize(
    ("source", "attr", "message"),
    [
        ("x = 1\n", None, r"defines no Agent; name one as"),
        ("raise RuntimeError('boom at import')\n", None,
         r"failed: RuntimeError: boom at import"),
        ("import no_such_module_anywhere_xyz\n", None,
         r"failed: ModuleNotFoundError: No module named 'no_such_module_anywhere_xyz'"),
        (AGENT_FILE.format(name="bot", label="b"), "other", r"defines no 'other'"),
        ("agent = 42\n", "agent", r"bad_agent\.py.:agent is not an agent: .* got int"),
    ],
)
def test_bad_agent_files_name_the_problem(
    tmp_path: Path, source: str, attr: str | None, message: str
) -> None:
    path = write(tmp_path / "bad_agent.py", source)
    location = f"{path}:{attr}" if attr else str(path)
    with pytest.raises(ModelLoadError, match=message) as info:
        resolve(location)
    assert "Traceback" not in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ModelLoadError, match=r"agent file '.*nope\.py' does not exist"):
        resolve(str(missing))
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve(f"{missing}:agent")


def test_a_responses_agent_in_a_file_is_found(tmp_path: Path, tracking_uri: str) -> None:
    # tracking_uri: MLflow traces ResponsesAgent.predict; keep the trace out of the cwd
    path = write(tmp_path / "plain_ra.py", """
        import mlflow
        from mlflow.pyfunc import ResponsesAgent
        from mlflow.types.responses import ResponsesAgentResponse


        class Plain(ResponsesAgent):
            def predict(self, request):
                return ResponsesAgentResponse(output=[self.create_text_output_item(
                    text="plain", id="p1")])


        model = Plain()
        mlflow.models.set_model(model)
    """)
    served = resolve(str(path))
    assert answer(served.agent) == "plain"
    assert served.agent.native_interfaces  # adapted, not wrapped as an opaque object


def _requirements() -> list[str]:
    return [f"{p}=={importlib.metadata.version(p)}" for p in ("mlflow", "cloudpickle")]


def test_a_model_dir_and_a_loaded_agent_carry_their_facts(tmp_path: Path, tracking_uri: str
                                                          ) -> None:  # fmt: skip
    from mlflow_app_agent.flavor import save_model
    from mlflow_app_agent.model.load import load_agent

    model_dir = tmp_path / "model"
    save_model(str(ECHO), model_dir, git="off", pip_requirements=_requirements())
    served = resolve(model_dir)
    assert answer(served.agent) == "hello there"
    assert served.flavor == "mlflow_app_agent"
    assert served.local_path == str(model_dir)
    assert served.model_uri == str(model_dir)  # no registry: the location itself
    assert served.registered_name is None and served.registered_version is None

    loaded = load_agent(model_dir)
    from_loaded = resolve(loaded)
    assert isinstance(from_loaded, ServedAgent)
    assert from_loaded.local_path == str(loaded.local_path)
    assert from_loaded.flavor == "mlflow_app_agent" and from_loaded.git == dict(loaded.git)
    assert answer(from_loaded.agent) == "hello there"


def test_a_broken_model_dir_is_a_model_load_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: [this is: not: valid yaml\n")
    with pytest.raises(ModelLoadError, match=r"broken-model"):
        resolve(str(broken))
    with pytest.raises(ModelLoadError, match="not a model URI"):
        resolve("no-such-dir-or-uri")


def _info_when_ready(client: Any) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 30
    while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    return dict(client.get("/agent/info").json())


def test_a_file_served_from_a_checkout_shows_its_git_state() -> None:
    import subprocess

    from starlette.testclient import TestClient

    from mlflow_app_agent.server import create_app

    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode != 0:
        pytest.skip("not running from a git checkout")
    with TestClient(create_app(str(ECHO), tracing=False)) as c:
        git = _info_when_ready(c)["git"]
    assert git["commit"] == head.stdout.strip()
    assert git["source"] == "working tree at serve time"
    assert isinstance(git["dirty"], bool) and "diff" not in git


def test_a_file_outside_any_repository_has_no_commit(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from mlflow_app_agent.server import create_app

    path = write(tmp_path / "loose.py", AGENT_FILE.format(name="bot", label="loose"))
    with TestClient(create_app(str(path), tracing=False)) as c:
        git = _info_when_ready(c)["git"]
    assert git["commit"] is None and git["source"] == "working tree at serve time"
