"""The public API is a contract: adding or removing a name is a deliberate change here."""

import subprocess
import sys

import mlflow_app_agent

EXPECTED = {
    "FLAVOR_NAME", "Agent", "AgentExtensions", "MlflowAppAgentError", "RequestContext", "Resource", "__version__",
    "check_agent", "check_auth", "create_app", "deploy", "get_config", "load_agent",
    "load_model", "log_model", "materialize", "request_context", "save_model",
    "use_request_context", "verify",
}


def test_all_is_locked() -> None:
    assert set(mlflow_app_agent.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in mlflow_app_agent.__all__:
        assert getattr(mlflow_app_agent, name) is not None, name


def test_import_is_light() -> None:
    """Importing the package must not import MLflow, FastAPI or the SDK (start-up time)."""
    code = (
        "import sys, mlflow_app_agent; "
        "heavy = [m for m in ('mlflow', 'fastapi', 'databricks.sdk') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mlflow_app_agent.nope  # noqa: B018


def test_dir_lists_the_lazy_names_before_they_are_imported() -> None:
    """Completion in notebooks sees the lazily imported names (``dir()`` of both packages)."""
    import mlflow_app_agent.testing as testing

    assert set(mlflow_app_agent.__all__) <= set(dir(mlflow_app_agent))
    assert {"check_agent", "resolve_target", "ci_profile"} <= set(dir(testing))
    assert set(testing.__all__) <= set(dir(testing))
