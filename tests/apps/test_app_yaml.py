from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlflow_app_agent.apps.build import app_yaml
from mlflow_app_agent.errors import MaterializeError
from mlflow_app_agent.resources import parse_resources


def test_resources_become_value_from_entries() -> None:
    resources = parse_resources([
        {"kind": "serving_endpoint", "endpoint_name": "llm", "env": "LLM"},
        {"kind": "experiment", "experiment_id": "42", "name": "traces"},
        {"kind": "sql_warehouse", "warehouse_id": "abc"},  # no env: nothing to inject
        {"kind": "secret", "scope": "s", "key": "k", "env": "TOKEN"},
    ])
    spec = app_yaml.build_app_spec(model_location=".", model_id="m-1", resources=resources)
    assert spec.env == [
        {"name": "MLFLOW_TRACKING_URI", "value": "databricks"},
        {"name": "MLFLOW_ACTIVE_MODEL_ID", "value": "m-1"},
        {"name": "LLM", "valueFrom": "serving_endpoint-llm"},
        {"name": "TOKEN", "valueFrom": "secret-s-k"},
        {"name": "MLFLOW_EXPERIMENT_ID", "valueFrom": "traces"},
    ]
    text = app_yaml.render(spec)
    assert yaml.safe_load(text)["command"] == ["python", "-m", "mlflow_app_agent.serve", "."]


def test_experiment_with_its_own_env_and_no_model_id() -> None:
    resources = parse_resources([
        {"kind": "experiment", "experiment_id": "42", "env": "MLFLOW_EXPERIMENT_ID"}])
    spec = app_yaml.build_app_spec(model_location=".", model_id=None, resources=resources)
    assert [e["name"] for e in spec.env] == ["MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"]


@pytest.mark.parametrize("decls, match", [
    ([{"kind": "serving_endpoint", "endpoint_name": "a", "env": "X"},
      {"kind": "serving_endpoint", "endpoint_name": "b", "env": "X"}], "set by two resources"),
    ([{"kind": "serving_endpoint", "endpoint_name": "a", "env": "MLFLOW_TRACKING_URI"}],
     "already sets"),
])
def test_env_clashes_are_errors(decls: list[dict[str, str]], match: str) -> None:
    with pytest.raises(MaterializeError, match=match):
        app_yaml.build_app_spec(model_location=".", model_id=None,
                                resources=parse_resources(decls))


def test_read_round_trip_and_bad_files(tmp_path: Path) -> None:
    spec = app_yaml.build_app_spec(model_location=".", model_id="m-1", resources=[])
    (tmp_path / "app.yaml").write_text(app_yaml.render(spec))
    assert app_yaml.read_app_spec(tmp_path) == spec
    for text, match in [
        ("command: python app.py\n", "non-empty list"),
        ("command: [python]\nenv: [{name: A}]\n", r"env\[0\]"),
        ("command: [python]\nenv: {A: b}\n", "must be a list"),
        ("command: [\n", "not valid YAML"),
    ]:
        (tmp_path / "app.yaml").write_text(text)
        with pytest.raises(MaterializeError, match=match):
            app_yaml.read_app_spec(tmp_path)
    (tmp_path / "app.yaml").unlink()
    with pytest.raises(MaterializeError, match="has no app.yaml"):
        app_yaml.read_app_spec(tmp_path)
