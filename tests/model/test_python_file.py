"""The one agent-file loader (``model/python_file.py``), through ``load_agent`` as the server,
``validate`` and models from code use it: which object is the agent, every way a file can be
wrong (one error naming it), and that loading leaves ``sys.path`` / ``sys.modules`` as they
were. (Moved from tests/server/test_source.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlflow_app_agent.errors import AgentDefinitionError, ModelLoadError
from mlflow_app_agent.model.load import load_agent
from mlflow_app_agent.model.python_file import load_python_file
from tests.model.agent_files import AGENT_FILE, answer, write


def test_a_file_with_one_agent_is_served_without_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "solo.py", AGENT_FILE.format(name="bot", label="solo"))
    served = load_agent(str(path))
    assert served.agent.name == "solo" and answer(served.agent) == "solo"
    assert served.model_uri is None and served.flavor is None


def test_two_agents_need_a_name_and_name_picks_one(tmp_path: Path) -> None:
    path = write(tmp_path / "pair.py", AGENT_FILE.format(name="first", label="first")
                 + AGENT_FILE.format(name="second", label="second"))
    with pytest.raises(ModelLoadError, match=r"defines 2 agents; name one as .*pair\.py':<var"):
        load_agent(path)
    assert answer(load_agent(f"{path}:second").agent) == "second"
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
        load_agent(location)
    assert "Traceback" not in str(info.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ModelLoadError, match=r"agent file '.*nope\.py' does not exist"):
        load_agent(str(missing))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_agent(f"{missing}:agent")


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
    served = load_agent(str(path))
    assert answer(served.agent) == "plain"
    assert served.agent.native_interfaces  # adapted, not wrapped as an opaque object




def test_set_model_wins_over_module_level_agents(tmp_path: Path) -> None:
    source = (AGENT_FILE.format(name="first", label="first")
              + AGENT_FILE.format(name="second", label="second")
              + "\nimport mlflow\nmlflow.models.set_model(second)\n")
    assert answer(load_python_file(write(tmp_path / "chosen.py", source))) == "second"
    # what set_model stored does not leak into the next file
    with pytest.raises(ModelLoadError, match="defines 2 agents"):
        load_python_file(write(tmp_path / "pair.py", AGENT_FILE.format(name="a", label="a")
                               + AGENT_FILE.format(name="b", label="b")))


def test_errors_are_both_definition_and_load_errors(tmp_path: Path) -> None:
    # models from code at log time catch AgentDefinitionError; the server ModelLoadError
    path = write(tmp_path / "nothing.py", "x = 1\n")
    with pytest.raises(AgentDefinitionError, match="set_model") as info:
        load_python_file(path)
    assert isinstance(info.value, ModelLoadError)


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.py", "x = 1\n\n\n\ndef f()\n    return 1\n")
    with pytest.raises(ModelLoadError, match=r"broken\.py:5: expected ':'"):
        load_python_file(path)


def test_loading_leaves_sys_path_and_sys_modules_as_they_were(tmp_path: Path) -> None:
    helpers = tmp_path / "helpers_dir"
    helpers.mkdir()
    write(helpers / "helper_words_for_hygiene_test.py", "WORD = 'from-helper'\n")
    write(tmp_path / "sibling_words_for_hygiene_test.py", "WORD = 'from-sibling'\n")
    path = write(tmp_path / "hygiene.py", AGENT_FILE.format(name="bot", label="x")
                 .replace("'x'", "sibling_words_for_hygiene_test.WORD + "
                                 "helper_words_for_hygiene_test.WORD")
                 .replace("from mlflow_app_agent import Agent",
                          "from mlflow_app_agent import Agent\n"
                          "import sibling_words_for_hygiene_test\n"
                          "import helper_words_for_hygiene_test"))
    path_before, modules_before = list(sys.path), set(sys.modules)
    for _ in range(2):  # loading twice: the same result, nothing accumulates
        agent = load_python_file(path, extra_sys_path=[helpers])
        assert answer(agent) == "from-siblingfrom-helper"  # the agent keeps its imports
        assert sys.path == path_before
        assert set(sys.modules) - modules_before == set()
    # and a failing file cleans up just the same
    write(tmp_path / "fails.py", "import sibling_words_for_hygiene_test\nraise RuntimeError('x')\n")
    with pytest.raises(ModelLoadError, match="RuntimeError"):
        load_python_file(tmp_path / "fails.py")
    assert sys.path == path_before and set(sys.modules) - modules_before == set()


def test_a_file_that_never_imports_mlflow_loads_without_it(tmp_path: Path) -> None:
    import subprocess

    path = write(tmp_path / "light.py", AGENT_FILE.format(name="bot", label="light"))
    code = (
        "import sys\n"
        "from mlflow_app_agent.model.load import load_agent\n"
        f"assert load_agent({str(path)!r}).agent.name == 'light'\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
