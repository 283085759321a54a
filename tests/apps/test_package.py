from __future__ import annotations

import subprocess
import sys


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
