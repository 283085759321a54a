"""Probe each declared resource with the current credentials, through databricks-sdk, before a
deploy finds out the hard way. Probes run concurrently with a per-probe timeout, so the whole
check takes about as long as the slowest answer. Secret values are never read: a secret is
checked by listing its scope's keys."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

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
    if r.kind == "serving_endpoint":
        def endpoint() -> tuple[bool, str]:
            e = w.serving_endpoints.get(r.endpoint_name)
            ready = e.state.ready.value if e.state and e.state.ready else "unknown"
            return True, f"reachable; endpoint state {ready}"
        return "serving_endpoints.get", endpoint
    if r.kind == "genie_space":
        def genie() -> tuple[bool, str]:
            space = w.genie.get_space(r.space_id)
            return True, f"reachable: {space.title or r.space_id}"
        return "genie.get_space", genie
    if r.kind == "secret":
        def secret() -> tuple[bool, str]:
            keys = {s.key for s in w.secrets.list_secrets(r.scope)}
            if r.key not in keys:
                return False, f"scope {r.scope} has no key {r.key}"
            return True, "key present (value not read)"
        return "secrets.list_secrets", secret
    if r.kind == "sql_warehouse":
        def warehouse() -> tuple[bool, str]:
            wh = w.warehouses.get(r.warehouse_id)
            state = wh.state.value if wh.state else "unknown"
            return True, f"reachable: {wh.name or r.warehouse_id} ({state})"
        return "warehouses.get", warehouse
    if r.kind == "experiment":
        def experiment() -> tuple[bool, str]:
            exp = w.experiments.get_experiment(r.experiment_id).experiment
            if exp is not None and exp.lifecycle_stage == "deleted":
                return False, f"experiment {exp.name} is deleted"
            return True, f"reachable: {exp.name if exp else r.experiment_id}"
        return "experiments.get_experiment", experiment
    if r.kind == "uc_securable":
        api, call = {
            "CONNECTION": (w.connections.get, "connections.get"),
            "FUNCTION": (w.functions.get, "functions.get"),
            "TABLE": (w.tables.get, "tables.get"),
            "VOLUME": (w.volumes.read, "volumes.read"),
        }[str(r.securable_type)]

        def securable() -> tuple[bool, str]:
            api(r.securable_full_name)
            return True, f"reachable: {str(r.securable_type).lower()} {r.securable_full_name}"
        return call, securable
    if r.kind == "job":
        def job() -> tuple[bool, str]:
            j = w.jobs.get(int(str(r.job_id)))
            return True, f"reachable: {j.settings.name if j.settings else r.job_id}"
        return "jobs.get", job
    if r.kind == "database":
        def database() -> tuple[bool, str]:
            inst = w.database.get_database_instance(r.instance_name)
            return True, f"reachable: instance {inst.name or r.instance_name}"
        return "database.get_database_instance", database

    def app() -> tuple[bool, str]:
        a = w.apps.get(r.app_name)
        return True, f"reachable: {a.url or r.app_name}"
    return "apps.get", app


def _reason(exc: BaseException, r: Resource | None) -> str:
    from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated

    from mlflow_app_agent.apps.workspace.sdk_calls import sdk_message

    message = sdk_message(exc)
    if isinstance(exc, PermissionDenied):
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
) -> list[CheckResult]:
    """One row for the identity (``current_user.me``), then one per declared resource (from
    the model or app dir, plus ``resources``: Resource, dict or ``kind:key=value``)."""
    from mlflow_app_agent.apps.workspace.declared import declared_resources, merge_resources

    declared = declared_resources(model_uri_or_dir) if model_uri_or_dir is not None else []
    targets = merge_resources(declared, resources)
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
            ok, reason = False, _reason(exc, res)
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
