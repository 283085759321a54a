"""Requirements of logged models (issue 15): the toolkit always, pinned to the running
version; what the agent file and code_paths import directly, resolved to installed
distributions and pinned, beside MLflow's own inference."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

import mlflow_app_agent
from mlflow_app_agent import dependencies
from mlflow_app_agent._version import __version__
from mlflow_app_agent.errors import AgentDefinitionError

TOOLKIT = f"mlflow-app-agent=={__version__}"
YAML = f"pyyaml=={importlib.metadata.version('pyyaml')}"
HTTPX = f"httpx=={importlib.metadata.version('httpx')}"
MLFLOW = f"mlflow=={importlib.metadata.version('mlflow')}"
AGENT = '''
import json
import httpx as _h
from yaml import safe_dump
import mlflow
from mlflow_app_agent import Agent

agent = Agent("deps")

@agent.invoke_method
def invoke(request):
    return {"output": [{"type": "message", "id": "m", "role": "assistant",
                        "content": [{"type": "output_text", "text": "ok"}]}]}

mlflow.models.set_model(agent)
'''


def requirements_of(model_dir: Path) -> list[str]:
    return (model_dir / "requirements.txt").read_text().splitlines()


def test_modules_resolve_to_installed_distributions_pinned() -> None:
    pins = dependencies.distributions_of({"yaml", "httpx", "json", "os", "__future__",
                                          "no_such_module_xyz", "mlflow"})
    assert pins == {"pyyaml": YAML, "httpx": HTTPX, "mlflow": MLFLOW}  # mlflow, not -skinny


def test_direct_requirements_put_the_toolkit_first_and_leave_given_names_alone() -> None:
    assert dependencies.direct_requirements(()) == [TOOLKIT]
    assert dependencies.direct_requirements({"yaml", "httpx"}) == [TOOLKIT, HTTPX, YAML]
    given = ["PyYAML>=5", "-r other.txt", "./wheels/x.whl", "mlflow_app_agent"]
    assert dependencies.direct_requirements({"yaml", "httpx"}, given=given) == [HTTPX]


def test_code_paths_imports_are_read_from_every_python_file(tmp_path: Path) -> None:
    pkg = tmp_path / "tools"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import httpx\n")
    (pkg / "sub" / "deep.py").write_text("def f():\n    import yaml\n")
    (pkg / "broken.py").write_text("def (:\n")
    (pkg / "data.txt").write_text("import nothing\n")
    single = tmp_path / "one.py"
    single.write_text("from click import echo\nfrom . import sibling\n")
    found = dependencies.imported_modules_of_code_paths([pkg, single])
    assert found == {"httpx", "yaml", "click"}


def test_inferred_requirements_add_direct_imports_and_the_toolkit(tmp_path: Path) -> None:
    """MLflow infers from what loading imports; the file's own imports are pinned beside."""
    tools = tmp_path / "tools.py"
    tools.write_text("import click\n")
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    mlflow_app_agent.save_model(str(agent), tmp_path / "m", git="off", code_paths=[str(tools)])
    lines = requirements_of(tmp_path / "m")
    click = f"click=={importlib.metadata.version('click')}"
    for pin in (TOOLKIT, HTTPX, YAML, MLFLOW, click):
        assert pin in lines, lines
    assert len({line.split("==")[0] for line in lines}) == len(lines)  # one line per package


def test_explicit_requirements_get_the_toolkit_only(tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    mlflow_app_agent.save_model(str(agent), tmp_path / "m", git="off",
                                pip_requirements=["mlflow-skinny"])
    assert requirements_of(tmp_path / "m") == ["mlflow-skinny", TOOLKIT]
    req_file = tmp_path / "reqs.txt"
    req_file.write_text("mlflow-skinny\nmlflow-app-agent\n")
    mlflow_app_agent.save_model(str(agent), tmp_path / "m2", git="off",
                                pip_requirements=str(req_file))
    assert requirements_of(tmp_path / "m2") == ["mlflow-skinny", "mlflow-app-agent"]


def test_extra_requirements_win_over_the_direct_pins(tmp_path: Path) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    mlflow_app_agent.save_model(str(agent), tmp_path / "m", git="off",
                                extra_pip_requirements=["pyyaml>=5"])
    lines = requirements_of(tmp_path / "m")
    assert "pyyaml>=5" in lines and YAML not in lines
    assert TOOLKIT in lines and HTTPX in lines


def test_an_unreadable_requirements_file_is_named_before_anything_is_written(
    tmp_path: Path,
) -> None:
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    with pytest.raises(AgentDefinitionError, match="nope.txt"):
        mlflow_app_agent.save_model(str(agent), tmp_path / "m", git="off",
                                    pip_requirements=str(tmp_path / "nope.txt"))
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("source", [
    "from mlflow.pyfunc import ResponsesAgent\n",
    "import mlflow.pyfunc\n",
    "from mlflow import pyfunc\n",
    "def f():\n    import mlflow.pyfunc.model\n",
])
def test_an_import_of_mlflow_pyfunc_implies_pandas(source: str) -> None:
    """mlflow.pyfunc (a ResponsesAgent's base class) imports pandas, which mlflow-skinny, all
    a lean app installs of MLflow, does not bring: the agent's requirements must name it."""
    assert dependencies.imported_modules_of_source(source) == {"mlflow", "pandas"}


def test_mlflow_alone_implies_nothing() -> None:
    assert dependencies.imported_modules_of_source(
        "import mlflow\nfrom mlflow.models import set_model\n") == {"mlflow"}


def test_a_pickled_responses_agent_implies_pandas() -> None:
    import cloudpickle
    import mlflow.pyfunc

    class Echo(mlflow.pyfunc.ResponsesAgent):
        def predict(self, request: Any) -> Any:
            raise NotImplementedError

    assert "pandas" in dependencies.imported_modules_of_pickle(cloudpickle.dumps(Echo()))


RESPONSES_AGENT = '''
import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentResponse


class Echo(ResponsesAgent):
    def predict(self, request):
        return ResponsesAgentResponse(output=[self.create_text_output_item(text="ok", id="m")])


mlflow.models.set_model(Echo())
'''


def test_a_responses_agent_file_gets_pandas_pinned(tmp_path: Path) -> None:
    """The lean app serves a ResponsesAgent only if pandas is installed (mlflow.pyfunc
    imports it); MLflow's own inference does not see that import, the file's does."""
    agent = tmp_path / "agent.py"
    agent.write_text(RESPONSES_AGENT)
    mlflow_app_agent.save_model(str(agent), tmp_path / "m", git="off")
    pandas = f"pandas=={importlib.metadata.version('pandas')}"
    assert pandas in requirements_of(tmp_path / "m")
