"""Probe each declared resource with the current credentials, through databricks-sdk, before a
deploy finds out the hard way. Probes run concurrently with a per-probe timeout, so the whole
check takes about as long as the slowest answer. Secret values are never read: a secret is
checked by listing its scope's keys."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from mlflow_app_agent import resources as kinds
from mlflow_app_agent.resources import Resource

DEFAULT_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class CheckResult:
    resource: str
    check: str
    ok: bool
    reason: str


def _probe(w: Any, r: Resource) -> tuple[str, Callable[[], tuple[bool, str]]]:
    """(name of the SDK call, a function doing it -> (ok, reason))."""
    if isinstance(r, kinds.ServingEndpointResource):
        name = r.endpoint_name

        def endpoint() -> tuple[bool, str]:
            e = w.serving_endpoints.get(name)
            ready = e.state.ready.value if e.state and e.state.ready else "unknown"
            return True, f"reachable; endpoint state {ready}"
        return "serving_endpoints.get", endpoint
    if isinstance(r, kinds.GenieSpaceResource):
        space_id = r.space_id

        def genie() -> tuple[bool, str]:
            space = w.genie.get_space(space_id)
            return True, f"reachable: {space.title or space_id}"
        return "genie.get_space", genie
    if isinstance(r, kinds.SecretResource):
        scope, key = r.scope, r.key

        def secret() -> tuple[bool, str]:
            keys = {s.key for s in w.secrets.list_secrets(scope)}
            if key not in keys:
                return False, f"scope {scope} has no key {key}"
            return True, "key present (value not read)"
        return "secrets.list_secrets", secret
    if isinstance(r, kinds.SqlWarehouseResource):
        warehouse_id = r.warehouse_id

        def warehouse() -> tuple[bool, str]:
            wh = w.warehouses.get(warehouse_id)
            state = wh.state.value if wh.state else "unknown"
            return True, f"reachable: {wh.name or warehouse_id} ({state})"
        return "warehouses.get", warehouse
    if isinstance(r, kinds.ExperimentResource):
        experiment_id = r.experiment_id

        def experiment() -> tuple[bool, str]:
            exp = w.experiments.get_experiment(experiment_id).experiment
            if exp is not None and exp.lifecycle_stage == "deleted":
                return False, f"experiment {exp.name} is deleted"
            return True, f"reachable: {exp.name if exp else experiment_id}"
        return "experiments.get_experiment", experiment
    if isinstance(r, kinds.UcSecurableResource):
        api, call = {
            "CONNECTION": (w.connections.get, "connections.get"),
            "FUNCTION": (w.functions.get, "functions.get"),
            "TABLE": (w.tables.get, "tables.get"),
            "VOLUME": (w.volumes.read, "volumes.read"),
        }[r.securable_type]
        kind, full_name = r.securable_type.lower(), r.securable_full_name

        def securable() -> tuple[bool, str]:
            api(full_name)
            return True, f"reachable: {kind} {full_name}"
        return call, securable
    if isinstance(r, kinds.JobResource):
        job_id = r.job_id

        def job() -> tuple[bool, str]:
            j = w.jobs.get(int(job_id))
            return True, f"reachable: {j.settings.name if j.settings else job_id}"
        return "jobs.get", job
    if isinstance(r, kinds.DatabaseResource):
        instance = r.instance_name

        def database() -> tuple[bool, str]:
            inst = w.database.get_database_instance(instance)
            return True, f"reachable: instance {inst.name or instance}"
        return "database.get_database_instance", database
    app_name = r.field("app_name")

    def app() -> tuple[bool, str]:
        a = w.apps.get(app_name)
        return True, f"reachable: {a.url or app_name}"
    return "apps.get", app


_MISSING_SCOPES = re.compile(r"does not have required scopes?:?\s*([\w.:,\s-]+)", re.I)


def _reason(exc: BaseException, r: Resource | None, as_user: bool = False) -> str:
    from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated

    from mlflow_app_agent.apps.workspace.sdk_calls import sdk_message

    message = sdk_message(exc)
    if isinstance(exc, PermissionDenied):
        scopes = _MISSING_SCOPES.search(message)
        if scopes:  # the token lacks a scope: the user may well have the permission
            names = [s.strip() for s in scopes.group(1).split(",") if s.strip()]
            return (f"missing scope {', '.join(names)} (403: {message}); add it to the app's "
                    "user_api_scopes (log_model(user_api_scopes=...) or deploy "
                    "--user-api-scope) and sign in again")
        if as_user:
            need = f"; the user needs {r.permission} on it" if r is not None else ""
            return f"missing permission (403): {message}{need}"
        need = f"; the app needs {r.permission} on it" if r is not None else ""
        return f"permission denied (403): {message}{need}"
    if isinstance(exc, NotFound):
        return f"not found (404): {message}"
    if isinstance(exc, Unauthenticated):
        return f"credentials rejected (401): {message}"
    if isinstance(exc, DatabricksError):
        return f"{exc.error_code or type(exc).__name__}: {message}"
    return f"{type(exc).__name__}: {message}"


def _label(r: Resource) -> str:
    return f"{r.kind} {r.identity}"


def check_auth(
    model_uri_or_dir: str | os.PathLike[str] | None = None,
    *,
    client: Any = None,
    resources: Iterable[Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    as_user: bool = False,
) -> list[CheckResult]:
    """One row for the identity (``current_user.me``), then one per declared resource (from
    the model or app dir, plus ``resources``: Resource, dict or ``kind:key=value``).

    ``as_user``: ``client`` holds a signed-in user's token; only the ``auth: user|both``
    resources are probed, and a 403 for a scope the token lacks reads "missing scope X",
    apart from a missing permission."""
    from mlflow_app_agent.apps.workspace.declared import declared_resources, merge_resources

    declared = declared_resources(model_uri_or_dir) if model_uri_or_dir is not None else []
    targets = merge_resources(declared, resources)
    if as_user:
        targets = [r for r in targets if r.auth in ("user", "both")]
    if client is None:
        from mlflow_app_agent.apps.workspace.sdk_calls import workspace_client
        from mlflow_app_agent.errors import CheckAuthError

        # bound the SDK's own HTTP timeout and retries too, so no probe outlives the check
        client = workspace_client(error=CheckAuthError, http_timeout_seconds=timeout,
                                  retry_timeout_seconds=max(1, int(timeout)))
    w = client

    def me() -> tuple[bool, str]:
        user = w.current_user.me()
        return True, f"authenticated as {user.user_name}"

    jobs: list[tuple[str, str, Resource | None, Callable[[], tuple[bool, str]]]] = [
        ("credentials", "current_user.me", None, me)]
    for r in targets:
        call, fn = _probe(w, r)
        jobs.append((_label(r), call, r, fn))

    results: list[CheckResult | None] = [None] * len(jobs)

    def run(i: int) -> None:
        label, call, res, fn = jobs[i]
        try:
            ok, reason = fn()
        except Exception as exc:  # every failure becomes a FAIL row, never a traceback
            ok, reason = False, _reason(exc, res, as_user)
        results[i] = CheckResult(label, call, ok, reason)

    # daemon threads: a probe stuck in the SDK's retries cannot hold the process open
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    end = time.monotonic() + timeout
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    return [row if row is not None else
            CheckResult(jobs[i][0], jobs[i][1], False, f"no answer within {timeout:g}s")
            for i, row in enumerate(results)]


def format_table(rows: list[CheckResult]) -> str:
    header = ("RESOURCE", "CHECK", "STATUS", "REASON")
    cells = [header] + [(r.resource, r.check, "OK" if r.ok else "FAIL", r.reason) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells]
    return "\n".join(line.rstrip() for line in lines)


__all__ = ["CheckResult", "check_auth", "format_table"]
