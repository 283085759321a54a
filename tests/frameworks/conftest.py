"""Session fixtures of the framework matrix: one scripted LLM for the session, and per
framework (a parametrized session fixture, so pytest sets each one up once and runs all its
tests together) the agent logged + registered once, served once by a real
``python -m mlflow_app_agent.serve`` process, materialized once and run once with
``run-local``.

run-local's venv: a uv-mode app (pyproject.toml + uv.lock, materialize's default) is
installed for real with ``uv sync --frozen``. A requirements.txt app's venv is by default *seeded* with this interpreter's packages (a venv whose
``.pth`` adds this environment's site-packages) instead of ``pip install -r
requirements.txt`` from the index, which takes minutes for these apps; the install itself
is covered by tests/apps/test_run_local_e2e.py, and ``test_app_pins_match_this_environment``
proves the seeded environment has exactly the versions the app pins. Set
``MLFLOW_APP_AGENT_TEST_REAL_INSTALL=1`` to have run-local build the venv for real.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .scripted_llm import ScriptedLLM, running

HERE = Path(__file__).resolve().parent
REAL_INSTALL = os.environ.get("MLFLOW_APP_AGENT_TEST_REAL_INSTALL") == "1"


@dataclass(frozen=True)
class Framework:
    name: str
    agent_file: Path
    #: what the agent file imports: the model's requirements pin them at the logged versions
    direct: tuple[str, ...]
    #: what those need, not imported by the agent: the app must pin them too (issue 15.3)
    transitive: tuple[str, ...]


FRAMEWORKS = {
    "langgraph": Framework("langgraph", HERE / "langgraph_agent.py",
                           ("langgraph", "langchain-core", "langchain-openai"), ("openai", "tiktoken")),
    "openai-agents": Framework("openai-agents", HERE / "openai_agents_agent.py",
                               ("openai-agents", "openai"), ("griffelib",)),
}


@dataclass(frozen=True)
class Logged:
    framework: Framework
    name: str
    version: str
    tracking_uri: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@pytest.fixture(scope="session")
def scripted_llm() -> Iterator[tuple[str, ScriptedLLM]]:
    with running() as served:
        yield served


@pytest.fixture(scope="session")
def llm_env(scripted_llm: tuple[str, ScriptedLLM]) -> dict[str, str]:
    """What an app is given to reach its LLM: the openai client's own variables."""
    return {"OPENAI_BASE_URL": scripted_llm[0], "OPENAI_API_KEY": "scripted-llm-needs-no-key",
            "LLM_MODEL": "scripted-llm"}


@pytest.fixture(scope="session", params=sorted(FRAMEWORKS))
def framework(request: pytest.FixtureRequest) -> Framework:
    pytest.importorskip({"langgraph": "langchain_openai", "openai-agents": "agents"}[
        request.param])
    return FRAMEWORKS[request.param]


@pytest.fixture(scope="session")
def framework_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("frameworks-cache")


@pytest.fixture(scope="session")
def logged(framework: Framework, _session_tracking_uri: str, llm_env: dict[str, str]) -> Logged:
    """The framework's agent file logged with MLflow's requirement inference (what a user
    gets) and registered, version 1."""
    import mlflow

    import mlflow_app_agent

    name = f"{framework.name}-{uuid.uuid4().hex[:6]}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", _session_tracking_uri)
        for key, value in llm_env.items():
            mp.setenv(key, value)  # the inference subprocess imports the agent file
        mlflow.set_tracking_uri(_session_tracking_uri)
        info = mlflow_app_agent.log_model(
            str(framework.agent_file), registered_model_name=name, git="off")
    return Logged(framework, name, str(info.registered_model_version), _session_tracking_uri)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:  # one client: polling costs little CPU
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited early:\n{log.read_text()}")
            try:
                if client.get(url + "/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    raise RuntimeError(f"the server was not ready in {timeout} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def app_dir(logged: Logged, framework_cache: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The registered version materialized into an Apps source directory."""
    from mlflow_app_agent.apps import materialize

    out = tmp_path_factory.mktemp(f"app-{logged.framework.name}") / "app"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", logged.tracking_uri)
        mp.setenv("MLFLOW_APP_AGENT_CACHE_DIR", str(framework_cache))
        return Path(materialize(logged.uri, out))


def seed_venv(app_dir: Path, root: Path) -> None:
    """Put a ready venv where run-local looks for this app's one: made from the base
    interpreter, without pip, its site-packages chaining to this environment's."""
    from mlflow_app_agent.apps.local import run_local

    venv = root / run_local.requirements_key(app_dir)
    if venv.exists():
        return
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = next(venv.glob("lib/python*/site-packages"))
    here = sysconfig.get_paths()["purelib"]
    (site_packages / "_seeded_from_test_env.pth").write_text(
        f"import site; site.addsitedir({here!r})\n")
    (venv / ".mlflow-app-agent-complete").write_text(venv.name + "\n")


@dataclass(frozen=True)
class Stack:
    served: str  #: ``python -m mlflow_app_agent.serve models:/NAME/1`` (real uvicorn)
    local: str  #: ``run-local`` of the materialized app, behind the local Apps proxy


@pytest.fixture(scope="session")
def stack(logged: Logged, app_dir: Path, llm_env: dict[str, str], framework_cache: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The registered version served, and its materialized app run with ``run-local``
    (the library form of the CLI: app.yaml's command in a clean environment). Both
    processes start at once: their start-up (imports) is most of this matrix's time."""
    from mlflow_app_agent.apps.local.run_local import LocalApp, RunLocalOptions

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    workdir = tmp_path_factory.mktemp(f"serve-{logged.framework.name}")
    log = workdir / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": logged.tracking_uri, **llm_env}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow_app_agent.serve", logged.uri, "--host", "127.0.0.1",
             "--port", str(port), "--no-tracing", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir,
        )
    root = framework_cache / "venvs"
    if not REAL_INSTALL and not (app_dir / "uv.lock").is_file():
        seed_venv(app_dir, root)  # a uv-mode app installs for real: uv sync is quick
    options = RunLocalOptions(
        as_user="ada@example.com", port=0, venv_root=root, ready_timeout=300,
        extra_env={**llm_env, "MLFLOW_APP_AGENT_TRACING": "false"},
    )
    lines: list[str] = []
    app = LocalApp(app_dir, options, progress=lines.append)
    try:
        with pytest.MonkeyPatch.context() as mp:
            # passed through to the app (tracing is off, so nothing is written there)
            mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{framework_cache / 'local-app.db'}")
            mp.setenv("MLFLOW_APP_AGENT_CACHE_DIR", str(framework_cache))
            try:
                local = app.start()
            except Exception:
                print("\n".join(lines[-60:]))
                raise
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc, log, 300)
        yield Stack(served=url, local=local)
    finally:
        app.stop()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def served(stack: Stack) -> str:
    return stack.served


@pytest.fixture(scope="session")
def local_app(stack: Stack) -> str:
    return stack.local
