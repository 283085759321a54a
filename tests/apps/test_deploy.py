"""deploy: the real databricks-sdk against the local workspace server (no workspace is
reachable here), including its failure modes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mlflow_app_agent.apps.build.manifest import read_manifest, write_manifest
from mlflow_app_agent.apps.workspace.deployment import deploy, parse_grant
from mlflow_app_agent.cli import main
from mlflow_app_agent.errors import ConfigError, DeployError, ManifestMismatchError

from .workspace_server import TOKEN, Workspace, WorkspaceServer, build_app_dir, client_for


@pytest.fixture
def ws() -> Iterator[Workspace]:
    with WorkspaceServer() as workspace:
        workspace.serving_endpoints["my-llm"] = {"name": "my-llm", "id": "e1"}
        yield workspace


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return build_app_dir(tmp_path / "app")


def _local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _rewrite_manifest(app_dir: Path) -> None:
    meta = {k: v for k, v in read_manifest(app_dir).items()
            if k not in ("files", "manifest_version")}
    write_manifest(app_dir, meta)


def _deploy(ws: Workspace, app_dir: Path, **kw: Any) -> Any:
    lines: list[str] = []
    kw.setdefault("app_name", "agent-app")
    result = deploy(app_dir, client=client_for(ws), progress=lines.append, **kw)
    return result, lines


def test_first_deploy_creates_uploads_files_verbatim_and_deploys(ws: Workspace,
                                                                 app_dir: Path) -> None:
    result, lines = _deploy(ws, app_dir, description="echo agent")
    assert result.url == "https://agent-app-1234567890.aws.databricksapps.com"
    assert result.status == "SUCCEEDED"
    assert result.source_code_path.startswith(
        "/Workspace/Users/dev@example.com/.mlflow-app-agent/agent-app/")
    # every file landed as a plain FILE (RAW), byte for byte; agent.py starts with the
    # notebook header and still is a .py file, not a notebook
    landed = ws.files_under(result.source_code_path)
    local = _local_files(app_dir)
    assert {k: v["object_type"] for k, v in landed.items()} == {k: "FILE" for k in local}
    assert {k: v["content"] for k, v in landed.items()} == local
    # the SNAPSHOT deployment took exactly that tree
    dep = ws.deployments["agent-app"][result.deployment_id]
    assert dep["mode"] == "SNAPSHOT"
    assert ws.deployed_files[result.deployment_id] == local
    app = ws.apps["agent-app"]
    assert app["active_deployment"]["deployment_id"] == result.deployment_id
    assert app["description"] == "echo agent"
    assert {r["name"]: next(k for k in r if k not in ("name", "description"))
            for r in app["resources"]} == {"llm": "serving_endpoint", "traces": "experiment"}
    assert app["resources"][0]["serving_endpoint"] == {"name": "my-llm",
                                                      "permission": "CAN_QUERY"}
    ops = ws.ops()
    assert ops.index("apps.create") > ops.index("workspace.import")  # upload first
    assert ops.index("apps.deploy") > ops.index("apps.create")
    assert "apps.update" not in ops  # never the call that wipes scopes
    text = "\n".join(lines)
    assert "uploading 7 files" in text and "uploaded 7/7" in text
    assert "waiting for SUCCEEDED" in text and result.url in text
    assert TOKEN not in text
    assert all(h == f"Bearer {TOKEN}" for h in ws.auth_headers)


def test_a_uv_mode_dir_deploys_its_lock_and_no_requirements(ws: Workspace,
                                                            tmp_path: Path) -> None:
    app_dir = build_app_dir(tmp_path / "uv-app", mode="uv")
    result, _ = _deploy(ws, app_dir)
    landed = ws.deployed_files[result.deployment_id]
    assert {"pyproject.toml", "uv.lock"} <= set(landed) and "requirements.txt" not in landed
    # a requirements.txt added later would switch Apps to pip: refused before any call
    (app_dir / "requirements.txt").write_text("requests\n")
    before = len(ws.ops())
    with pytest.raises(ManifestMismatchError, match="mode: materialized for uv mode"):
        _deploy(ws, app_dir)
    assert len(ws.ops()) == before


def test_redeploy_keeps_foreign_resources_and_scopes_and_is_idempotent(
        ws: Workspace, app_dir: Path) -> None:
    foreign = {"name": "db", "sql_warehouse": {"id": "w1", "permission": "CAN_USE"}}
    ws.add_app("agent-app", resources=[foreign], user_api_scopes=["sql", "serving.serving-endpoints"],
               description="kept")
    first, _ = _deploy(ws, app_dir)
    app = ws.apps["agent-app"]
    assert "apps.create" not in ws.ops()
    assert any(path.endswith("/update") for op, path in ws.calls if op == "apps.create_update")
    assert [r["name"] for r in app["resources"]] == ["db", "llm", "traces"]
    assert app["user_api_scopes"] == ["sql", "serving.serving-endpoints"]
    assert app["description"] == "kept"

    ws.calls.clear()
    second, _ = _deploy(ws, app_dir)
    assert "apps.create_update" not in ws.ops()  # nothing changed: no update
    assert second.source_code_path == first.source_code_path  # content-addressed folder
    assert second.deployment_id != first.deployment_id


def test_extra_resources_replace_declared_ones_by_name(ws: Workspace, app_dir: Path) -> None:
    _deploy(ws, app_dir, resources=["serving_endpoint:name=llm,endpoint_name=other-llm",
                                    {"kind": "secret", "scope": "s", "key": "k", "name": "key"}])
    by_name = {r["name"]: r for r in ws.apps["agent-app"]["resources"]}
    assert by_name["llm"]["serving_endpoint"]["name"] == "other-llm"
    assert by_name["key"]["secret"] == {"scope": "s", "key": "k", "permission": "READ"}


def test_create_race_409_means_the_app_exists(ws: Workspace, app_dir: Path) -> None:
    ws.create_race = True
    result, lines = _deploy(ws, app_dir)
    assert result.status == "SUCCEEDED"
    assert "created concurrently" in "\n".join(lines)
    assert ws.ops().count("apps.create") == 1


def test_stopped_app_is_started_before_deploying(ws: Workspace, app_dir: Path) -> None:
    ws.add_app("agent-app", compute="STOPPED")
    _deploy(ws, app_dir)
    ops = ws.ops()
    assert ops.index("apps.start") < ops.index("apps.deploy")


def test_grants_are_merged_into_the_app_permissions(ws: Workspace, app_dir: Path) -> None:
    sp = "9f0c1d2e-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
    _deploy(ws, app_dir, grants=["alice@example.com:CAN_USE", "group:data-team:use",
                                 f"{sp}:CAN_MANAGE", "analysts:CAN_USE"])
    acl = ws.app_acls["agent-app"]
    assert acl["dev@example.com"]["permission_level"] == "CAN_MANAGE"  # the creator stays
    assert acl["alice@example.com"] == {"user_name": "alice@example.com",
                                        "permission_level": "CAN_USE"}
    assert acl["data-team"] == {"group_name": "data-team", "permission_level": "CAN_USE"}
    assert acl[sp] == {"service_principal_name": sp, "permission_level": "CAN_MANAGE"}
    assert acl["analysts"] == {"group_name": "analysts", "permission_level": "CAN_USE"}
    assert "apps.set_permissions" not in ws.ops()


@pytest.mark.parametrize("spec", ["alice@example.com", "alice@example.com:CAN_READ", ":CAN_USE"])
def test_bad_grants_and_names_fail_before_any_call(ws: Workspace, app_dir: Path,
                                                   spec: str) -> None:
    with pytest.raises(ConfigError, match="PRINCIPAL:CAN_USE"):
        _deploy(ws, app_dir, grants=[spec])
    with pytest.raises(ConfigError, match="app name 'Bad_Name'"):
        _deploy(ws, app_dir, app_name="Bad_Name")
    assert ws.calls == []


def test_parse_grant_kinds() -> None:
    assert parse_grant(("bob@x.io", "manage")).kind == "user_name"
    assert parse_grant("sp:abc:CAN_USE").kind == "service_principal_name"
    assert parse_grant("user:bob:CAN_USE").principal == "bob"


def test_file_over_10_mib_is_refused_before_any_call(ws: Workspace, app_dir: Path) -> None:
    (app_dir / "model" / "weights.bin").write_bytes(b"\0" * (10 * 1024 * 1024 + 1))
    _rewrite_manifest(app_dir)
    with pytest.raises(DeployError, match=r"up to 10 MiB; too big: model/weights.bin"):
        _deploy(ws, app_dir)
    assert ws.calls == []


def test_changed_app_dir_is_refused_by_verify(ws: Workspace, app_dir: Path) -> None:
    (app_dir / "app.yaml").write_text("command: [sh, -c, evil]\n")
    with pytest.raises(ManifestMismatchError, match="changed: app.yaml"):
        _deploy(ws, app_dir)
    assert ws.calls == []


def test_403_on_upload_removes_the_folder_and_deploys_nothing(ws: Workspace,
                                                              app_dir: Path) -> None:
    ws.fail("workspace.import", 403, match="tools.py")
    with pytest.raises(DeployError) as err:
        _deploy(ws, app_dir)
    msg = str(err.value)
    assert "workspace.upload(/Workspace/Users/dev@example.com/.mlflow-app-agent/agent-app/" in msg
    assert "tools.py) was refused (403 PERMISSION_DENIED" in msg
    assert "CAN_MANAGE on the workspace folder" in msg and "Nothing was deployed" in msg
    assert TOKEN not in msg
    ops = ws.ops()
    assert "apps.create" not in ops and "apps.deploy" not in ops
    assert "workspace.delete" in ops
    assert not any("/.mlflow-app-agent/agent-app/" in p for p in ws.objects)  # folder gone


def test_403_on_create_names_the_call_and_the_permission(ws: Workspace, app_dir: Path) -> None:
    ws.fail("apps.create", 403)
    with pytest.raises(DeployError, match=r"apps.create\(agent-app\) was refused \(403 "
                                          r"PERMISSION_DENIED.*right to create apps"):
        _deploy(ws, app_dir)
    assert "apps.deploy" not in ws.ops()


def test_failed_deployment_keeps_the_previous_one(ws: Workspace, app_dir: Path) -> None:
    old = {"deployment_id": "old-dep", "status": {"state": "SUCCEEDED"}}
    ws.add_app("agent-app", active_deployment=old)
    ws.deployment_outcome = "FAILED"
    with pytest.raises(DeployError) as err:
        _deploy(ws, app_dir, grants=["alice@example.com:CAN_USE"])
    msg = str(err.value)
    assert "FAILED: Error installing packages: requirements.txt line 3" in msg
    assert "keeps serving its previous deployment old-dep" in msg
    assert ws.apps["agent-app"]["active_deployment"]["deployment_id"] == "old-dep"
    assert "apps.update_permissions" not in ws.ops()  # nothing after a failed deploy


def test_deployment_that_never_finishes_times_out(ws: Workspace, app_dir: Path) -> None:
    ws.deployment_outcome = "NEVER"
    with pytest.raises(DeployError) as err:  # pytest-timeout catches a wait that never ends
        _deploy(ws, app_dir, timeout=1.0)
    msg = str(err.value)
    assert "timed out after 1s waiting for deployment" in msg
    assert "(apps.get_deployment)" in msg and "had no active deployment" in msg


def test_rejected_credentials(ws: Workspace, app_dir: Path) -> None:
    from databricks.sdk import WorkspaceClient

    client = WorkspaceClient(host=ws.host, token="dapi-wrong", auth_type="pat")
    with pytest.raises(DeployError, match=r"current_user.me: the workspace rejected the "
                                          r"credentials \(401"):
        deploy(app_dir, app_name="agent-app", client=client)


# --- the command line -----------------------------------------------------------------


@pytest.fixture
def sdk_env(ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    import os

    for key in list(os.environ):
        if key.startswith(("DATABRICKS_", "ARM_", "GOOGLE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))
    return {"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": TOKEN}


def test_cli_deploy_prints_the_url(ws: Workspace, app_dir: Path, sdk_env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        main, ["deploy", str(app_dir), "--app", "agent-app", "--grant", "bob@example.com:CAN_USE",
               "--resource", "secret:scope=s,key=k,name=key"], env=sdk_env)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == \
        "https://agent-app-1234567890.aws.databricksapps.com"
    assert "uploaded 7/7" in result.stderr and "host metadata" not in result.stderr
    assert TOKEN not in result.output
    assert "key" in [r["name"] for r in ws.apps["agent-app"]["resources"]]


def test_cli_deploy_with_a_profile(ws: Workspace, app_dir: Path, sdk_env: dict[str, str],
                                   tmp_path: Path) -> None:
    cfg = tmp_path / "databrickscfg"
    cfg.write_text(f"[local]\nhost = {ws.host}\ntoken = {TOKEN}\n")
    result = CliRunner().invoke(main, ["deploy", str(app_dir), "--app", "agent-app",
                                       "--profile", "local"],
                                env={"DATABRICKS_CONFIG_FILE": str(cfg)})
    assert result.exit_code == 0, result.output


def test_cli_deploy_failure_is_one_clear_line(ws: Workspace, app_dir: Path,
                                              sdk_env: dict[str, str]) -> None:
    ws.fail("apps.deploy", 403)
    result = CliRunner().invoke(main, ["deploy", str(app_dir), "--app", "agent-app"],
                                env=sdk_env)
    assert result.exit_code == 1
    assert "Error: apps.deploy(agent-app) was refused (403" in result.stderr
    assert "CAN_MANAGE on app agent-app" in result.stderr
    assert "Traceback" not in result.output and TOKEN not in result.output


def test_cli_deploy_without_credentials(app_dir: Path, sdk_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["deploy", str(app_dir), "--app", "agent-app"])
    assert result.exit_code == 1
    assert "no Databricks credentials" in result.stderr and "Traceback" not in result.output


def test_content_hash_names_the_folder(ws: Workspace, app_dir: Path) -> None:
    first, _ = _deploy(ws, app_dir)
    (app_dir / "README.md").write_text("# changed\n")
    _rewrite_manifest(app_dir)
    second, _ = _deploy(ws, app_dir)
    assert first.source_code_path != second.source_code_path


# --- from a registry version: materialized on the fly -----------------------------------


def test_deploy_a_registered_version(ws: Workspace, echo_version: Any, tracking_uri: str) -> None:
    result, lines = _deploy(ws, echo_version.uri)
    text = "\n".join(lines)
    assert f"materializing {echo_version.uri}" in text
    landed = ws.files_under(result.source_code_path)
    assert {"app.yaml", "pyproject.toml", "uv.lock", "MANIFEST.json",
            "model/MLmodel"} <= set(landed)  # uv mode, the default
    assert any(p.startswith("wheels/") and p.endswith(".whl") for p in landed)
    assert all(o["object_type"] == "FILE" for o in landed.values())
    kinds = sorted(next(k for k in r if k not in ("name", "description"))
                   for r in ws.apps["agent-app"]["resources"])
    assert kinds == ["experiment", "secret", "serving_endpoint"]
    assert ws.deployed_files[result.deployment_id]["app.yaml"] == landed["app.yaml"]["content"]


def test_compute_that_never_comes_up_times_out_before_deploying(ws: Workspace,
                                                               app_dir: Path) -> None:
    ws.compute_stuck = True
    with pytest.raises(DeployError) as err:
        _deploy(ws, app_dir, timeout=1.0)
    msg = str(err.value)
    assert "timed out after 1s waiting for the compute of app agent-app to become ACTIVE" in msg
    assert "(apps.get)" in msg and "nothing was deployed" in msg
    assert "apps.deploy" not in ws.ops()


def test_403_reading_the_app_stops_before_the_upload(ws: Workspace, app_dir: Path) -> None:
    ws.add_app("agent-app")
    ws.fail("apps.get", 403)
    with pytest.raises(DeployError, match=r"apps.get\(agent-app\) was refused \(403.*"
                                          r"CAN_USE or CAN_MANAGE on app agent-app"):
        _deploy(ws, app_dir)
    assert ws.ops() == ["current_user.me", "apps.get"]


def test_cli_deploy_checks_its_arguments_before_credentials(app_dir: Path,
                                                            sdk_env: dict[str, str]) -> None:
    # No credentials at all: the bad name is still what is reported (fix it once, not twice).
    result = CliRunner().invoke(main, ["deploy", str(app_dir), "--app", "Bad_Name"])
    assert result.exit_code == 1
    assert "Error: app name 'Bad_Name'" in result.stderr, result.output
    result = CliRunner().invoke(main, ["deploy", str(app_dir), "--app", "ok-app",
                                       "--grant", "bob@example.com:READ"])
    assert result.exit_code == 2  # the option's type refuses it: a usage error
    assert "Error: Invalid value for '--grant': grant 'bob@example.com:READ'" in \
        result.stderr, result.output


def test_cli_deploy_to_an_unreachable_host_stops_within_timeout(
        app_dir: Path, sdk_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"DATABRICKS_HOST": f"http://127.0.0.1:{port}", "DATABRICKS_TOKEN": TOKEN}
    result = CliRunner().invoke(main, ["deploy", str(app_dir), "--app", "agent-app",
                                       "--timeout", "2"], env=env)
    assert result.exit_code == 1, result.output
    assert "Error: current_user.me: no answer from the workspace" in result.stderr
    assert "Traceback" not in result.output and TOKEN not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_cli_deploy_timeout_must_be_positive(app_dir: Path, value: str) -> None:
    result = CliRunner().invoke(main, ["deploy", str(app_dir), "--app", "agent-app",
                                       "--timeout", value])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--timeout'" in result.output
