"""materialize --bundle: databricks.yml next to the app source, valid in the published bundle
schema, holding the same facts deploy sends (checked against the local workspace server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from mlflow_app_agent.apps.workspace.deployment import deploy
from mlflow_app_agent.cli import main

from .conftest import ECHO_AGENT, LoggedVersion, model_requirements
from .workspace_server import Workspace, WorkspaceServer, client_for

SCHEMA = Path(__file__).parent / "data" / "databricks-bundle-schema.apps.json"


@pytest.fixture(scope="module")
def obo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import mlflow_app_agent

    path = tmp_path_factory.mktemp("obo") / "model"
    mlflow_app_agent.save_model(
        str(ECHO_AGENT), path, git="off", pip_requirements=model_requirements(),
        resources=[
            {"kind": "genie_space", "name": "genie", "space_id": "g-1", "auth": "user",
             "env": "GENIE_SPACE_ID"},
            {"kind": "serving_endpoint", "name": "llm", "endpoint_name": "my-llm",
             "auth": "both", "env": "LLM_ENDPOINT"},
            {"kind": "secret", "name": "key", "scope": "team", "key": "api", "env": "API_KEY"},
        ],
        compute_size="MEDIUM",
    )
    return path


@pytest.fixture
def ws() -> Iterator[Workspace]:
    with WorkspaceServer() as workspace:
        yield workspace


def _schema() -> dict[str, Any]:
    # The CLI's patterns (for ${var.x}-style references) use Go's Unicode classes, which
    # Python's re spells differently: letters+digits, and letters alone.
    text = SCHEMA.read_text().replace(r"[\\p{L}\\p{N}]", r"[^\\W_]")
    return dict(json.loads(text.replace(r"\\p{L}", r"[^\\W\\d_]")))


def _validate(doc: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.Draft202012Validator(_schema()).validate(doc)  # raises naming the bad field


def test_bundle_is_valid_and_holds_what_deploy_sends(obo_model: Path, tmp_path: Path,
                                                    ws: Workspace) -> None:
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, [
        "materialize", str(obo_model), str(out), "--bundle", "--app", "agent-app",
        "--instances", "2:4", "--compute-size", "LARGE", "--user-api-scope", "sql"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / "app")
    assert sorted(p.name for p in out.iterdir()) == ["app", "databricks.yml"]
    doc = yaml.safe_load((out / "databricks.yml").read_text())
    _validate(doc)
    app = doc["resources"]["apps"]["agent_app"]
    assert app["source_code_path"] == "./app"
    assert set(doc["targets"]) == {"dev", "prod"}

    # the same app dir, deployed: the request carries the same facts as the bundle
    deploy(out / "app", app_name="agent-app", client=client_for(ws))
    (create,) = ws.bodies("apps.create")
    assert create["name"] == app["name"]
    assert create["resources"] == app["resources"]
    assert [r["name"] for r in app["resources"]] == ["llm", "key"]  # auth user: no grant
    assert create["user_api_scopes"] == app["user_api_scopes"] == [
        "dashboards.genie", "serving.serving-endpoints", "sql"]
    assert (create["compute_size"], create["compute_min_instances"],
            create["compute_max_instances"]) == (app["compute_size"],
                                                 app["compute_min_instances"],
                                                 app["compute_max_instances"]) == ("LARGE", 2, 4)
    # the genie space is the user's: its env holds the id, not a valueFrom
    env = {e["name"]: e for e in yaml.safe_load((out / "app" / "app.yaml").read_text())["env"]}
    assert env["GENIE_SPACE_ID"] == {"name": "GENIE_SPACE_ID", "value": "g-1"}
    assert env["LLM_ENDPOINT"] == {"name": "LLM_ENDPOINT", "valueFrom": "llm"}
    manifest = json.loads((out / "app" / "MANIFEST.json").read_text())
    assert manifest["deploy"] == {"compute_size": "LARGE", "instances": {"min": 2, "max": 4},
                                  "user_api_scopes": ["dashboards.genie",
                                                      "serving.serving-endpoints", "sql"]}


def test_the_schema_catches_a_wrong_field(obo_model: Path, tmp_path: Path) -> None:
    import jsonschema

    from mlflow_app_agent.apps.build.bundle import bundle_doc

    CliRunner().invoke(main, ["materialize", str(obo_model), str(tmp_path / "app")])
    doc = bundle_doc(tmp_path / "app", app_name="agent-app", bundle_root=tmp_path)
    _validate(doc)
    doc["resources"]["apps"]["agent_app"]["compute_sizes"] = "LARGE"  # a typo
    with pytest.raises(jsonschema.ValidationError, match="compute_sizes"):
        _validate(doc)


@pytest.mark.parametrize(("args", "message"), [
    (["--bundle"], "--bundle needs --app"),
    (["--bundle", "--app", "Bad_Name"], "app name 'Bad_Name'"),
    (["--bundle", "--app", "ok-app", "--instances", "0"], "each count must be 1-5"),
    (["--instances", "5:2"], "MIN (5) is larger than MAX (2)"),
])
def test_bad_bundle_input_writes_nothing(obo_model: Path, tmp_path: Path, args: list[str],
                                         message: str) -> None:
    result = CliRunner().invoke(main, ["materialize", str(obo_model),
                                       str(tmp_path / "out"), *args])
    assert result.exit_code != 0 and message in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []


def test_bundle_app_factory_reaches_the_apps_command(
        tracking_uri: str, ext_version: LoggedVersion, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = CliRunner().invoke(main, [
        "materialize", ext_version.uri, str(out), "--bundle", "--app", "ext-app",
        "--app-factory", "ext_support:wrapping_factory"])
    assert result.exit_code == 0, result.output
    _validate(yaml.safe_load((out / "databricks.yml").read_text()))
    command = yaml.safe_load((out / "app" / "app.yaml").read_text())["command"]
    assert command[-2:] == ["--app-factory", "ext_support:wrapping_factory"]
