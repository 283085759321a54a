from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_importing_apps_stays_light() -> None:
    out = run("import sys, mlflow_app_agent.apps as a; "
              "print(sorted(m for m in ('mlflow', 'databricks.sdk', 'fastapi', 'httpx') "
              "if m in sys.modules))")
    assert out == "[]"


def test_deploy_and_check_auth_are_the_functions_in_any_import_order() -> None:
    out = run("import mlflow_app_agent.apps.workspace.deployment, mlflow_app_agent.apps.workspace.auth_check; "
              "import mlflow_app_agent as m, mlflow_app_agent.apps as a; "
              "print(callable(a.deploy), a.deploy.__module__, a.check_auth.__module__, "
              "m.deploy is a.deploy, m.materialize is a.materialize)")
    assert out == ("True mlflow_app_agent.apps.workspace.deployment mlflow_app_agent.apps.workspace.auth_check "
                   "True True")
    out = run("from mlflow_app_agent.apps import deploy, check_auth; "
              "print(deploy.__name__, check_auth.__name__)")
    assert out == "deploy check_auth"


LEAN_AGENT = '''
from mlflow_app_agent import Agent

agent = Agent("lean")


@agent.invoke_method
def invoke(request):
    text = request.input[-1].content
    return {"output": [{"type": "message", "id": "1", "role": "assistant",
                        "content": [{"type": "output_text", "text": text}]}]}
'''


# MLflow's models-from-code convention, as the templates write it: MLflow's set_model
# imports mlflow.pyfunc, and that imports pandas
SET_MODEL_AGENT = "import mlflow\n" + LEAN_AGENT + "\nmlflow.models.set_model(agent)\n"


@pytest.mark.parametrize("source", [LEAN_AGENT, SET_MODEL_AGENT], ids=["plain", "set_model"])
def test_serving_a_model_imports_no_authoring_only_package(tmp_path: Path, source: str) -> None:
    """The lean runtime ([serve]) has no pandas or GitPython: serving a logged agent must
    work with them unimportable (numpy stays: mlflow.types imports it)."""
    import mlflow_app_agent

    agent_file = tmp_path / "lean_agent.py"
    agent_file.write_text(source)
    mlflow_app_agent.save_model(str(agent_file), tmp_path / "m", git="off",
                                pip_requirements=["mlflow-skinny"])
    code = (
        "import sys\n"
        "for name in ('pandas', 'git', 'sklearn', 'uv'):\n"
        "    sys.modules[name] = None  # any import of them raises ImportError\n"
        "from fastapi.testclient import TestClient\n"
        "from mlflow_app_agent.server.app import create_app\n"
        f"app = create_app({str(tmp_path / 'm')!r}, tracing=False)\n"
        "with TestClient(app) as client:\n"
        "    import time\n"
        "    for _ in range(600):\n"
        "        if client.get('/ready').status_code == 200: break\n"
        "        time.sleep(0.1)\n"
        "    r = client.post('/invocations', json={'input': [{'role': 'user', 'content': 'hi'}]})\n"
        "    print(r.status_code, r.json()['output'][0]['content'][0]['text'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ,
                                            "MLFLOW_APP_AGENT_TRACING": "false"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "200 hi"
