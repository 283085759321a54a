"""Production deploy: user-authorization scopes, compute size and instances, with the real
databricks-sdk against the local workspace server (which enforces them as the Apps API
does: unknown scope, size or instance count -> 400) and records every request body."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mlflow_app_agent.apps.workspace.deployment import deploy
from mlflow_app_agent.cli import main
from mlflow_app_agent.errors import ConfigError

from .workspace_server import TOKEN, Workspace, WorkspaceServer, build_app_dir, client_for

OBO = [
    {"kind": "genie_space", "name": "genie", "space_id": "g-1", "auth": "user",
     "env": "GENIE_SPACE_ID"},
    {"kind": "serving_endpoint", "name": "llm", "endpoint_name": "my-llm", "auth": "user"},
    {"kind": "experiment", "name": "traces", "experiment_id": "42"},
]


@pytest.fixture
def ws() -> Iterator[Workspace]:
    with WorkspaceServer() as workspace:
        workspace.serving_endpoints["my-llm"] = {"name": "my-llm", "id": "e1"}
        workspace.genie_spaces["g-1"] = {"space_id": "g-1", "title": "Sales"}
        yield workspace


@pytest.fixture
def obo_dir(tmp_path: Path) -> Path:
    return build_app_dir(tmp_path / "app", OBO)


@pytest.fixture
def sdk_env(ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith(("DATABRICKS_", "ARM_", "GOOGLE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))
    return {"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": TOKEN}


def _deploy(ws: Workspace, src: Path, **kw: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    kw.setdefault("app_name", "agent-app")
    return deploy(src, client=client_for(ws), progress=lines.append, **kw), lines


def test_user_auth_resources_deploy_with_exactly_their_scopes_then_one_more_updates(
        ws: Workspace, obo_dir: Path) -> None:
    result, _ = _deploy(ws, obo_dir)
    (create,) = ws.bodies("apps.create")
    # field by field: what the SDK sent to POST /api/2.0/apps
    assert create["name"] == "agent-app"
    assert create["user_api_scopes"] == ["dashboards.genie", "serving.serving-endpoints"]
    # auth "user" resources are not granted to the service principal; "app" ones are
    assert create["resources"] == [
        {"name": "traces", "experiment": {"experiment_id": "42", "permission": "CAN_EDIT"}}]
    assert not {"compute_size", "compute_min_instances", "compute_max_instances"} & set(create)
    assert ws.apps["agent-app"]["user_api_scopes"] == create["user_api_scopes"]
    assert result.spec.user_api_scopes == ("dashboards.genie", "serving.serving-endpoints")

    ws.requests.clear()
    _, lines = _deploy(ws, obo_dir, user_api_scopes=["files.files"])
    assert not ws.bodies("apps.create")
    (update,) = ws.bodies("apps.create_update")
    assert update["update_mask"] == "user_api_scopes"
    assert update["app"]["name"] == "agent-app"
    assert update["app"]["user_api_scopes"] == [
        "dashboards.genie", "files.files", "serving.serving-endpoints"]
    assert ws.apps["agent-app"]["user_api_scopes"] == update["app"]["user_api_scopes"]
    assert any("updating app agent-app: user_api_scopes + files.files" in ln for ln in lines)

    ws.requests.clear()
    _deploy(ws, obo_dir)  # scopes already there (a superset): nothing to update
    assert not ws.bodies("apps.create_update")


def test_compute_size_and_instances_reach_the_app_and_are_shown_with_the_url(
        ws: Workspace, obo_dir: Path, sdk_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["deploy", str(obo_dir), "--app", "agent-app",
                                       "--compute-size", "large", "--instances", "2:4"],
                                env=sdk_env)
    assert result.exit_code == 0, result.output
    (create,) = ws.bodies("apps.create")
    assert (create["compute_size"], create["compute_min_instances"],
            create["compute_max_instances"]) == ("LARGE", 2, 4)
    app = ws.apps["agent-app"]
    assert (app["compute_size"], app["compute_min_instances"],
            app["compute_max_instances"]) == ("LARGE", 2, 4)
    url = "https://agent-app-1234567890.aws.databricksapps.com"
    assert result.stdout.strip() == url
    last = result.stderr.strip().splitlines()[-1]
    assert url in last and "compute LARGE" in last and "2-4 instances" in last
    assert "dashboards.genie" in last


def test_changing_compute_on_an_existing_app_updates_it_and_waits_for_compute(
        ws: Workspace, obo_dir: Path) -> None:
    ws.add_app("agent-app", compute_size="MEDIUM", compute_min_instances=1,
               compute_max_instances=1,
               user_api_scopes=["dashboards.genie", "serving.serving-endpoints"],
               resources=[{"name": "traces", "experiment": {"experiment_id": "42",
                                                             "permission": "CAN_EDIT"}}])
    result, lines = _deploy(ws, obo_dir, compute_size="LARGE", instances=3)
    (update,) = ws.bodies("apps.create_update")
    assert update["update_mask"] == \
        "compute_size,compute_min_instances,compute_max_instances"
    assert (update["app"]["compute_size"], update["app"]["compute_min_instances"],
            update["app"]["compute_max_instances"]) == ("LARGE", 3, 3)
    assert "user_api_scopes" not in update["app"] or \
        update["app"]["user_api_scopes"] == ["dashboards.genie", "serving.serving-endpoints"]
    text = "\n".join(lines)
    assert "compute_size MEDIUM -> LARGE" in text and "instances 1:1 -> 3:3" in text
    # the platform restarts compute for a new size: deploy waited for ACTIVE, then deployed
    assert "waiting for ACTIVE" in text
    ops = ws.ops()
    assert ops.index("apps.deploy") > ops.index("apps.create_update")
    assert result.status == "SUCCEEDED" and result.spec.instances == (3, 3)


@pytest.mark.parametrize(("args", "message"), [
    (["--instances", "0"], "each count must be 1-5"),
    (["--instances", "5:2"], "MIN (5) is larger than MAX (2)"),
    (["--instances", "6"], "each count must be 1-5"),
    (["--instances", "two"], "expected N or MIN:MAX"),
    (["--compute-size", "HUGE"], "compute size 'HUGE' is not one of LARGE, MEDIUM"),
    (["--user-api-scope", "genie"], "unknown user API scope 'genie'; known scopes: "),
    (["--resource", "secret:scope=s,key=k,auth=user"],
     "a secret resource cannot be used as the signed-in user"),
    (["--app", "Agent_App"], "app name 'Agent_App'"),
])
def test_bad_input_is_one_error_line_before_any_workspace_call(
        ws: Workspace, obo_dir: Path, sdk_env: dict[str, str], args: list[str],
        message: str) -> None:
    argv = ["deploy", str(obo_dir), *(["--app", "agent-app"] if "--app" not in args else []),
            *args]
    result = CliRunner().invoke(main, argv, env=sdk_env)
    assert result.exit_code != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert ws.requests == [] and ws.apps == {}  # not one call, nothing created


def test_the_local_server_refuses_what_the_apps_api_refuses(ws: Workspace) -> None:
    # the toolkit never sends these (it checks first); the SDK itself does not check them
    from databricks.sdk.errors import BadRequest
    from databricks.sdk.service.apps import App, ComputeSize

    w = client_for(ws)
    for bad in (App(name="a1", user_api_scopes=["sql", "no-such-scope"]),
                App(name="a2", compute_min_instances=0, compute_max_instances=2),
                App(name="a3", compute_min_instances=4, compute_max_instances=2),
                App(name="a4", compute_min_instances=2),
                App(name="a5", compute_size=ComputeSize.LARGE, compute_max_instances=6,
                    compute_min_instances=1)):
        with pytest.raises(BadRequest):
            w.apps.create(bad)
    assert ws.apps == {}
    assert [r["op"] for r in ws.requests] == ["apps.create"] * 5


def test_deploy_spec_parsing() -> None:
    from mlflow_app_agent.deploy_spec import DeploySpec, check_scopes, parse_instances

    assert parse_instances("3") == (3, 3) and parse_instances(" 2 : 4 ") == (2, 4)
    assert parse_instances((1, 5)) == (1, 5) and parse_instances(None) is None
    # the default identity scopes are carried by every token: accepted, not sent
    assert check_scopes(["sql", "iam.current-user:read", "sql"]) == ["sql"]
    spec = DeploySpec.build(user_api_scopes=["sql"], compute_size="large", instances="2:3")
    assert DeploySpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict() == {"user_api_scopes": ["sql"], "compute_size": "LARGE",
                              "instances": {"min": 2, "max": 3}}
    over = spec.merged(DeploySpec.build(user_api_scopes=["files.files"], instances=1))
    assert over.user_api_scopes == ("files.files", "sql") and over.instances == (1, 1)
    assert over.compute_size == "LARGE"
    with pytest.raises(ConfigError, match="MIN:MAX"):
        parse_instances("1:2:3")


# --- check-auth --as-user -----------------------------------------------------------------

def _check_as_user(ws: Workspace, src: Path, env: dict[str, str], token: str) -> Any:
    return CliRunner().invoke(main, ["check-auth", str(src), "--as-user",
                                     "--access-token-env", "USER_TOKEN"],
                              env={**env, "USER_TOKEN": token})


def test_check_auth_as_user_reports_a_missing_scope(ws: Workspace, obo_dir: Path,
                                                    sdk_env: dict[str, str]) -> None:
    ws.add_user_token("user-token-alice", "alice@example.com", {"serving.serving-endpoints"})
    result = _check_as_user(ws, obo_dir, sdk_env, "user-token-alice")
    assert result.exit_code == 1, result.output
    rows = {ln.split()[0] + " " + ln.split()[1]: ln for ln in result.stdout.splitlines()[1:]}
    assert "authenticated as alice@example.com" in rows["credentials current_user.me"]
    assert "missing scope dashboards.genie" in rows["genie_space g-1"]
    assert "OK" in rows["serving_endpoint my-llm"].split()
    assert not any("experiment" in key for key in rows)  # an auth "app" resource: not probed
    # every probe used the user's token, never the deployer's
    assert set(ws.auth_headers) == {"Bearer user-token-alice"}


def test_check_auth_as_user_tells_a_missing_permission_from_a_missing_scope(
        ws: Workspace, obo_dir: Path, sdk_env: dict[str, str]) -> None:
    ws.add_user_token("user-token-bob", "bob@example.com",
                      {"serving.serving-endpoints", "dashboards.genie"})
    ws.fail("genie.get_space", 403, message="User bob@example.com does not have CAN_RUN")
    result = _check_as_user(ws, obo_dir, sdk_env, "user-token-bob")
    assert result.exit_code == 1
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("genie_space"))
    assert "missing permission (403)" in line and "the user needs CAN_RUN" in line
    assert "missing scope" not in line


def test_check_auth_as_user_needs_the_token_env(obo_dir: Path,
                                                sdk_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["check-auth", str(obo_dir), "--as-user"], env=sdk_env)
    assert result.exit_code == 2 and "--access-token-env" in result.output
    result = CliRunner().invoke(main, ["check-auth", str(obo_dir), "--as-user",
                                       "--access-token-env", "NOT_SET_ANYWHERE"], env=sdk_env)
    assert result.exit_code == 1
    assert "Error: env NOT_SET_ANYWHERE" in result.stderr
