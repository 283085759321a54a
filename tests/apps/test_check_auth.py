"""check-auth: concurrent probes through the real databricks-sdk against the local workspace
server; FAIL rows for 403, 404, missing secret keys, timeouts; never a secret value."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mlflow_app_agent.apps.workspace.auth_check import check_auth, format_table
from mlflow_app_agent.cli import main

from .workspace_server import TOKEN, Workspace, WorkspaceServer, build_app_dir, client_for

SECRET_VALUE = b"s3cr3t-value-never-shown"

RESOURCES: list[dict[str, Any]] = [
    {"kind": "serving_endpoint", "endpoint_name": "my-llm"},
    {"kind": "genie_space", "space_id": "g1"},
    {"kind": "uc_securable", "securable_type": "CONNECTION", "securable_full_name": "github"},
    {"kind": "secret", "scope": "agent", "key": "api-key"},
    {"kind": "sql_warehouse", "warehouse_id": "wh1"},
    {"kind": "experiment", "experiment_id": "42"},
]
PROBE_OPS = ["serving_endpoints.get", "genie.get_space", "connections.get",
             "secrets.list_secrets", "warehouses.get", "experiments.get_experiment"]


@pytest.fixture
def ws() -> Iterator[Workspace]:
    with WorkspaceServer() as w:
        w.serving_endpoints["my-llm"] = {"name": "my-llm", "id": "e1",
                                         "state": {"ready": "READY"}}
        w.genie_spaces["g1"] = {"space_id": "g1", "title": "Sales"}
        w.connections["github"] = {"name": "github", "connection_type": "HTTP"}
        w.functions["main.tools.lookup"] = {"full_name": "main.tools.lookup"}
        w.secrets["agent"] = {"api-key": SECRET_VALUE}
        w.warehouses["wh1"] = {"id": "wh1", "name": "Starter", "state": "RUNNING"}
        w.experiments["42"] = {"experiment_id": "42", "name": "/Shared/traces",
                               "lifecycle_stage": "active"}
        yield w


def _rows(ws: Workspace, **kw: Any) -> list[Any]:
    kw.setdefault("resources", RESOURCES)
    return check_auth(kw.pop("model_uri_or_dir", None), client=client_for(ws), **kw)


def test_all_ok(ws: Workspace) -> None:
    rows = _rows(ws)
    assert [(r.check, r.ok) for r in rows] == [("current_user.me", True)] + [
        (op, True) for op in PROBE_OPS]
    assert rows[0].reason == "authenticated as dev@example.com"
    by_check = {r.check: r for r in rows}
    assert by_check["serving_endpoints.get"].resource == "serving_endpoint my-llm"
    assert by_check["serving_endpoints.get"].reason == "reachable; endpoint state READY"
    assert by_check["warehouses.get"].reason == "reachable: Starter (RUNNING)"
    assert by_check["secrets.list_secrets"].reason == "key present (value not read)"
    assert by_check["genie.get_space"].reason == "reachable: Sales"
    assert "secrets.get_secret" not in ws.ops()  # the value is never fetched
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["RESOURCE", "CHECK", "STATUS", "REASON"]
    assert SECRET_VALUE.decode() not in table


def test_403_on_one_resource_is_a_fail_row(ws: Workspace) -> None:
    ws.fail("genie.get_space", 403, message="User dev@example.com lacks CAN_RUN on space g1")
    rows = _rows(ws)
    failed = [r for r in rows if not r.ok]
    assert [r.resource for r in failed] == ["genie_space g1"]
    assert failed[0].reason == ("permission denied (403): User dev@example.com lacks CAN_RUN on "
                                "space g1; the app needs CAN_RUN on it")
    assert sum(r.ok for r in rows) == 6


def test_missing_resources_fail_with_404(ws: Workspace) -> None:
    del ws.warehouses["wh1"]
    del ws.experiments["42"]
    rows = {r.check: r for r in _rows(ws)}
    assert not rows["warehouses.get"].ok
    assert rows["warehouses.get"].reason == "not found (404): SQL warehouse wh1 does not exist"
    assert rows["experiments.get_experiment"].reason.startswith("not found (404): No Experiment")


def test_secret_key_missing_or_scope_missing(ws: Workspace) -> None:
    rows = _rows(ws, resources=[{"kind": "secret", "scope": "agent", "key": "other"},
                                {"kind": "secret", "scope": "nope", "key": "k"}])
    assert [(r.ok, r.reason) for r in rows[1:]] == [
        (False, "scope agent has no key other"),
        (False, "not found (404): Scope nope does not exist!"),
    ]


def test_uc_function_and_deleted_experiment(ws: Workspace) -> None:
    ws.experiments["42"]["lifecycle_stage"] = "deleted"
    rows = _rows(ws, resources=[
        {"kind": "uc_securable", "securable_type": "FUNCTION",
         "securable_full_name": "main.tools.lookup"},
        {"kind": "experiment", "experiment_id": "42"}])
    assert [(r.check, r.ok) for r in rows[1:]] == [("functions.get", True),
                                                   ("experiments.get_experiment", False)]
    assert rows[2].reason == "experiment /Shared/traces is deleted"


def test_probes_run_concurrently(ws: Workspace) -> None:
    for op in PROBE_OPS:
        ws.delays[op] = 1.0  # long enough that concurrent probes overlap on a busy machine
    rows = _rows(ws)
    assert all(r.ok for r in rows)
    assert ws.max_in_flight > 1, "the probes ran one after the other"


def test_a_probe_that_hangs_times_out_and_the_check_still_ends(ws: Workspace) -> None:
    ws.delays["warehouses.get"] = 6.0
    rows = {r.check: r for r in _rows(ws, timeout=1.0)}  # pytest-timeout catches a hang
    assert rows["warehouses.get"].reason == "no answer within 1s"
    assert rows["serving_endpoints.get"].ok


def test_rejected_credentials_fail_every_row(ws: Workspace) -> None:
    from databricks.sdk import WorkspaceClient

    client = WorkspaceClient(host=ws.host, token="dapi-wrong", auth_type="pat")
    rows = check_auth(None, client=client, resources=RESOURCES[:2])
    assert [r.ok for r in rows] == [False, False, False]
    assert rows[0].reason == "credentials rejected (401): Invalid access token"


def test_resources_come_from_the_app_dir_plus_extras(ws: Workspace, tmp_path: Path) -> None:
    app_dir = build_app_dir(tmp_path / "app")  # declares serving endpoint + experiment 42
    rows = _rows(ws, model_uri_or_dir=app_dir, resources=["genie_space:space_id=g1"])
    assert [r.resource for r in rows] == ["credentials", "serving_endpoint my-llm",
                                          "experiment 42", "genie_space g1"]
    # a plain model dir (MLmodel at the top) works too
    rows = _rows(ws, model_uri_or_dir=app_dir / "model", resources=[])
    assert [r.resource for r in rows][1:] == ["serving_endpoint my-llm", "experiment 42"]


def test_pyfunc_mlmodel_resources_block(ws: Workspace, tmp_path: Path) -> None:
    import yaml

    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text(yaml.safe_dump({
        "flavors": {"python_function": {"loader_module": "mlflow.pyfunc.model"}},
        "resources": {"api_version": "1", "databricks": {
            "serving_endpoint": [{"name": "my-llm"}],
            "uc_connection": [{"name": "github"}],
            "vector_search_index": [{"name": "main.idx"}]}}}))
    rows = _rows(ws, model_uri_or_dir=model, resources=[])
    assert [(r.resource, r.ok) for r in rows[1:]] == [("serving_endpoint my-llm", True),
                                                      ("uc_securable CONNECTION/github", True)]


# --- the command line -----------------------------------------------------------------


@pytest.fixture
def sdk_env(ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith("DATABRICKS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-databrickscfg"))
    return {"DATABRICKS_HOST": ws.host, "DATABRICKS_TOKEN": TOKEN}


def _cli(args: list[str], env: dict[str, str]) -> Any:
    return CliRunner().invoke(main, ["check-auth", *args], env=env)


def test_cli_all_ok_prints_a_table_and_exits_0(ws: Workspace, sdk_env: dict[str, str],
                                               tmp_path: Path) -> None:
    app_dir = build_app_dir(tmp_path / "app")
    result = _cli([str(app_dir), "--resource", "secret:scope=agent,key=api-key"], sdk_env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["RESOURCE", "CHECK", "STATUS", "REASON"]
    assert len(lines) == 5 and all(" OK " in line for line in lines[1:])
    assert "4 OK, 0 FAIL" in result.stderr
    assert TOKEN not in result.output and SECRET_VALUE.decode() not in result.output


def test_cli_a_failure_exits_1(ws: Workspace, sdk_env: dict[str, str]) -> None:
    ws.fail("serving_endpoints.get", 403)
    specs = [a for r in ("serving_endpoint:endpoint_name=my-llm", "genie_space:space_id=g1")
             for a in ("--resource", r)]
    result = _cli(specs, sdk_env)
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "my-llm" in line)
    assert row.split()[:4] == ["serving_endpoint", "my-llm", "serving_endpoints.get", "FAIL"]
    assert "permission denied (403)" in row and "CAN_QUERY" in row
    assert "1 FAIL" in result.stderr and "Traceback" not in result.output


def test_cli_needs_something_to_check(sdk_env: dict[str, str]) -> None:
    result = _cli([], sdk_env)
    assert result.exit_code == 2 and "MODEL or at least one --resource" in \
        result.output


def test_cli_bad_resource_spec_is_one_line(sdk_env: dict[str, str]) -> None:
    result = _cli(["--resource", "secret:scope=agent"], sdk_env)
    assert result.exit_code == 2  # a usage error, found by the option's type before any call
    assert "Error: Invalid value for '--resource': resources[0] is invalid" in result.stderr
    assert "a secret resource needs key" in result.stderr
    assert "Traceback" not in result.output


def test_resources_declared_by_a_registered_version(ws: Workspace, echo_version: Any,
                                                    tracking_uri: str) -> None:
    ws.experiments["1234"] = {"experiment_id": "1234", "name": "/Shared/echo"}
    ws.secrets["team"] = {"api-key": SECRET_VALUE}
    rows = _rows(ws, model_uri_or_dir=echo_version.uri, resources=[])
    assert sorted((r.resource, r.ok) for r in rows[1:]) == [
        ("experiment 1234", True), ("secret team/api-key", True),
        ("serving_endpoint my-llm", True)]


def test_a_plain_pyfunc_version_declares_nothing(ws: Workspace, plain_version: Any,
                                                 tracking_uri: str) -> None:
    rows = _rows(ws, model_uri_or_dir=plain_version.uri, resources=[])
    assert [r.check for r in rows] == ["current_user.me"]


def test_an_unknown_location_is_a_clear_error(ws: Workspace, tmp_path: Path) -> None:
    from mlflow_app_agent.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="is not a model URI and does not exist"):
        _rows(ws, model_uri_or_dir=str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match=r"neither a model directory \(MLmodel\) nor a "
                                             r"materialized app directory"):
        _rows(ws, model_uri_or_dir=tmp_path)


def test_cli_without_credentials_is_one_line(sdk_env: dict[str, str]) -> None:
    result = _cli(["--resource", "genie_space:space_id=g1"], {})
    assert result.exit_code == 1
    assert "Error: no Databricks credentials" in result.stderr
    assert "Traceback" not in result.output


def test_cli_with_a_profile(ws: Workspace, sdk_env: dict[str, str], tmp_path: Path) -> None:
    cfg = tmp_path / "databrickscfg"
    cfg.write_text(f"[local]\nhost = {ws.host}\ntoken = {TOKEN}\n")
    result = _cli(["--resource", "genie_space:space_id=g1", "--profile", "local"],
                  {"DATABRICKS_CONFIG_FILE": str(cfg)})
    assert result.exit_code == 0, result.output
    assert "authenticated as dev@example.com" in result.stdout


# --- the remaining resource kinds, and SDK errors that are neither 401, 403 nor 404 --------


def test_tables_volumes_jobs_databases_and_apps_are_probed(ws: Workspace) -> None:
    ws.tables["main.sales.orders"] = {"full_name": "main.sales.orders"}
    ws.volumes["main.sales.files"] = {"full_name": "main.sales.files"}
    ws.jobs["7"] = {"job_id": 7, "settings": {"name": "nightly-refresh"}}
    ws.database_instances["pg1"] = {"name": "pg1", "state": "AVAILABLE"}
    app = ws.add_app("helper")
    rows = _rows(ws, resources=[
        {"kind": "uc_securable", "securable_type": "TABLE",
         "securable_full_name": "main.sales.orders"},
        {"kind": "uc_securable", "securable_type": "volume",
         "securable_full_name": "main.sales.files"},
        {"kind": "job", "job_id": "7"},
        {"kind": "database", "instance_name": "pg1", "database_name": "agents"},
        {"kind": "app", "app_name": "helper"},
    ])
    assert [(r.resource, r.check, r.ok, r.reason) for r in rows[1:]] == [
        ("uc_securable TABLE/main.sales.orders", "tables.get", True,
         "reachable: table main.sales.orders"),
        ("uc_securable VOLUME/main.sales.files", "volumes.read", True,
         "reachable: volume main.sales.files"),
        ("job 7", "jobs.get", True, "reachable: nightly-refresh"),
        ("database pg1/agents", "database.get_database_instance", True,
         "reachable: instance pg1"),
        ("app helper", "apps.get", True, f"reachable: {app['url']}"),
    ]
    assert "jobs.get" in ws.ops() and "database.get_database_instance" in ws.ops()


def test_missing_job_database_and_app_fail_with_the_workspace_error(ws: Workspace) -> None:
    rows = _rows(ws, resources=[
        {"kind": "job", "job_id": "404404"},
        {"kind": "database", "instance_name": "gone", "database_name": "agents"},
        {"kind": "app", "app_name": "nope"},
    ])
    assert [r.ok for r in rows] == [True, False, False, False]
    # the Jobs API answers a missing job with 400; the SDK maps it to NotFound
    assert rows[1].reason == "not found (404): Job 404404 does not exist."
    assert rows[2].reason.startswith("not found (404): database instance gone")
    assert rows[3].reason.startswith("not found (404)")


def test_a_server_error_is_a_fail_row_with_its_code(ws: Workspace) -> None:
    ws.fail("genie.get_space", 500, message="the Genie service is down")
    ws.fail("apps.get", 403)
    rows = _rows(ws, resources=[{"kind": "genie_space", "space_id": "g1"},
                                {"kind": "app", "app_name": "helper"}])
    assert [r.ok for r in rows] == [True, False, False]
    assert rows[1].reason == "INTERNAL_ERROR: the Genie service is down"
    assert rows[2].reason.startswith("permission denied (403)")
    assert rows[2].reason.endswith("; the app needs CAN_USE on it")


def test_a_non_sdk_error_in_a_probe_is_a_fail_row_not_a_traceback(ws: Workspace) -> None:
    # Declarations are validated when parsed (a non-numeric job id is refused there); one
    # built around the validator, as an older manifest might hold, makes the probe itself
    # fail before it reaches the workspace.
    from mlflow_app_agent.resources import JobResource

    unchecked = JobResource.model_construct(kind="job", job_id="nightly", name="job-nightly",
                                            permission="CAN_MANAGE_RUN")
    rows = _rows(ws, resources=[unchecked])
    assert [r.ok for r in rows] == [True, False]
    assert rows[1].reason.startswith("ValueError: ")
    assert "jobs.get" not in ws.ops()


def test_without_a_client_the_environment_credentials_are_used(
    ws: Workspace, sdk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sdk_env.items():
        monkeypatch.setenv(key, value)
    rows = check_auth(None, resources=[{"kind": "genie_space", "space_id": "g1"}], timeout=3)
    assert [(r.check, r.ok) for r in rows] == [("current_user.me", True), ("genie.get_space", True)]
    assert ws.auth_headers and all(h == f"Bearer {TOKEN}" for h in ws.auth_headers)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_cli_timeout_must_be_positive(value: str) -> None:
    result = CliRunner().invoke(main, ["check-auth", "--resource", "job:job_id=1",
                                       "--timeout", value])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--timeout'" in result.output
