"""A new user's path, with no edits: ``init`` -> the project's own ``pytest`` (in a subprocess;
for the echo template in a fresh venv installed from the index and a wheelhouse) -> its
notebook (executed by a real Jupyter kernel) logs and registers the agent into a sqlite
registry -> the registered version loads and answers."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlflow_app_agent.templates import scaffold

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

_CLEAN_PREFIXES = ("AGENT_CONFIG", "DATABRICKS_", "MLFLOW_")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEAN_PREFIXES)}
    env.update(extra)
    return env


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from mlflow_app_agent import agent_config as config

    for name in list(os.environ):
        if name.startswith(_CLEAN_PREFIXES):
            monkeypatch.delenv(name)
    yield
    config.deactivate_config()  # loading a model activates its config process-wide


def _run_project_tests(project: Path, python: str = sys.executable,
                       timeout: float = 300) -> str:
    proc = subprocess.run(
        # the dev venv's unrelated plugins (langsmith, schemathesis) cost ~2 s of CPU to
        # import; a user's project venv has neither, and naming them there is harmless
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:langsmith_plugin",
         "-p", "no:schemathesis"],
        cwd=project,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def _ruff_clean(project: Path) -> None:
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed next to this Python")
    proc = subprocess.run(
        [str(ruff), "check", "--no-cache", "."], cwd=project, capture_output=True, text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout


def _execute_notebook(project: Path) -> Any:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(project / "notebook.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(project)}}
    )
    client.execute()
    return nb


def _notebook_output(nb: Any) -> str:
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", ""))
            texts.append(str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def _load_registered(project: Path, name: str) -> Any:
    import mlflow

    import mlflow_app_agent

    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow_app_agent.load_agent(f"models:/{name}/1")


@pytest.fixture
def fake_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The generated project's own fake (its tests use it too), for the notebook's kernel."""
    project = tmp_path / "fake-src"
    scaffold(project, "tool-calling")
    spec = importlib.util.spec_from_file_location(
        "generated_fake_databricks", project / "tests" / "fake_databricks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with module.FakeDatabricks() as fake:
        monkeypatch.setenv("DATABRICKS_HOST", fake.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", module.APP_TOKEN)
        yield fake


def test_echo_project_from_init_to_registry(
    tmp_path: Path, clean_environ: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "hello-agent"
    scaffold(project, "echo")
    # the echo project's own pytest runs in the fresh-venv test below, as a new user runs
    # it; not a second time here
    _ruff_clean(project)

    nb = _execute_notebook(project)
    assert "registered as models:/hello-agent/1" in _notebook_output(nb)

    loaded = _load_registered(project, "hello-agent")
    assert loaded.registered_version == "1"
    assert loaded.model_config == {"prefix": "echo: ", "uppercase": False}
    response = loaded.agent.invoke({"input": [{"role": "user", "content": "hi"}]})
    assert response["output"][0]["content"][0]["text"] == "echo: hi"
    # A deployment changes behaviour through its environment, without a new version.
    monkeypatch.setenv("AGENT_CONFIG__PREFIX", "prod: ")
    response = loaded.agent.invoke({"input": [{"role": "user", "content": "hi"}]})
    assert response["output"][0]["content"][0]["text"] == "prod: hi"


def test_tool_calling_project_from_init_to_registry(
    tmp_path: Path, clean_environ: None, fake_workspace: Any
) -> None:
    project = tmp_path / "tool-agent"
    scaffold(project, "tool-calling")
    out = _run_project_tests(project)
    assert " passed" in out and "failed" not in out
    _ruff_clean(project)

    fake_workspace.script(
        {"tool_calls": [{"name": "calculator", "arguments": {"expression": "(17 + 5) * 3"}}]},
        {"content": "66."},
    )
    nb = _execute_notebook(project)
    text = _notebook_output(nb)
    assert "registered as models:/tool-agent/1" in text
    assert "serving_endpoint databricks-claude-sonnet-4 -> AGENT_CONFIG__LLM__ENDPOINT_NAME" in text
    assert "'output': '{\"expression\": \"(17 + 5) * 3\", \"result\": 66}'" in text

    loaded = _load_registered(project, "tool-agent")
    assert [(r.kind, r.env) for r in loaded.resources] == [
        ("serving_endpoint", "AGENT_CONFIG__LLM__ENDPOINT_NAME")
    ]
    assert (loaded.local_path / "code" / "agent_tools.py").is_file()
    assert loaded.model_config is not None
    assert loaded.model_config["llm"]["endpoint_name"] == "databricks-claude-sonnet-4"

    # Serve the registered version; the openai client streams an answer that used a tool
    # acting for the forwarded user, and an env override changes the prompt without re-logging.
    db = f"sqlite:///{project / 'mlflow.db'}"
    port = _free_port()
    env = _clean_env(
        MLFLOW_TRACKING_URI=db,
        MLFLOW_REGISTRY_URI=db,
        DATABRICKS_HOST=fake_workspace.url,
        DATABRICKS_TOKEN="app-token",
        AGENT_CONFIG__SYSTEM_PROMPT="Prompt set by the deployment.",
    )
    cli = Path(sys.executable).with_name("mlflow-app-agent")
    with _server([str(cli), "serve", "models:/tool-agent/1", "--host", "127.0.0.1", "--port",
                  str(port), "--no-tracing"], env, port, cwd=tmp_path):
        from openai import OpenAI

        fake_workspace.script({"tool_calls": [{"name": "whoami"}]}, {"content": "You are Ana."})
        client = OpenAI(base_url=f"http://127.0.0.1:{port}", api_key="unused", max_retries=0)
        stream = client.responses.create(
            model="tool-agent",
            input=[{"role": "user", "content": "Who am I?"}],
            stream=True,
            extra_headers={
                "X-Forwarded-Access-Token": "user-token",
                "X-Forwarded-Email": "ana@example.com",
            },
        )
        events = [e.model_dump() for e in stream]
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in done] == ["function_call", "function_call_output", "message"]
    tool_result = json.loads(done[1]["output"])
    assert tool_result["user_name"] == "ana@example.com" and tool_result["acting_as"] == "user"
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == "You are Ana."
    system = fake_workspace.chat_requests()[-1]["body"]["messages"][0]
    assert system == {"role": "system", "content": "Prompt set by the deployment."}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(cmd: list[str], env: dict[str, str], port: int, cwd: Path) -> Iterator[None]:
    import httpx

    log = cwd / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"server exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toolkit built as it would be published (``python -m build``), checked by twine."""
    root = Path(__file__).resolve().parents[2]
    house = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(house),
                    str(root)], check=True, capture_output=True, timeout=600)
    twine = subprocess.run([sys.executable, "-m", "twine", "check", "--strict",
                            *map(str, house.glob("*.whl"))],
                           capture_output=True, text=True, timeout=120)
    assert twine.returncode == 0, twine.stdout + twine.stderr
    return house


def test_a_generated_project_installs_in_a_fresh_venv_from_index_and_wheelhouse(
    tmp_path: Path, wheelhouse: Path
) -> None:
    """What a new user runs, before the toolkit is on the index: a fresh venv,
    ``pip install -r requirements-dev.txt --find-links WHEELHOUSE``, the project's tests.

    Installed with uv's pip interface (the same requirement files, index and find-links
    semantics): pip took a minute here to unpack full MLflow's tree from its warm cache, uv
    seconds from a cold one. pip's own install path is what ``.ci/run`` and the pip-mode
    run-local test use."""
    from mlflow_app_agent.apps.build.resolve import uv_bin

    project = tmp_path / "proj"
    scaffold(project, "echo")
    venv = tmp_path / "venv"
    subprocess.run([uv_bin(), "venv", "-q", "--python", sys.executable, str(venv)],
                   check=True, timeout=300, env=_clean_env())
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [uv_bin(), "pip", "install", "-q", "--python", python,
         "-r", "requirements-dev.txt", "--find-links", str(wheelhouse)],
        cwd=project, capture_output=True, text=True, timeout=1500, env=_clean_env(),
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    where = subprocess.run([python, "-c", "import mlflow_app_agent; print(mlflow_app_agent.__file__)"],
                           cwd=project, capture_output=True, text=True, check=True).stdout
    assert str(venv) in where  # the wheelhouse's wheel, not this checkout
    out = _run_project_tests(project, python, timeout=600)
    assert " passed" in out and "failed" not in out
