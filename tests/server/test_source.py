"""What the server serves: agent objects, agent files (``agent.py[:name]``), model dirs and
``LoadedAgent``s resolve to a ``LoadedAgent``; every way a location can be wrong is a
``ModelLoadError`` naming it. (The agent-file loader's own tests: tests/model/.)"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

from mlflow_app_agent import Agent
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.model.load import LoadedAgent
from mlflow_app_agent.server.source import is_deferred, resolve
from tests.model.agent_files import AGENT_FILE, answer, write

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"


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
    assert str(served.local_path) == str(model_dir)
    assert served.model_uri == str(model_dir)  # no registry: the location itself
    assert served.registered_name is None and served.registered_version is None

    loaded = load_agent(model_dir)
    from_loaded = resolve(loaded)
    assert isinstance(from_loaded, LoadedAgent)
    assert str(from_loaded.local_path) == str(loaded.local_path)
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
