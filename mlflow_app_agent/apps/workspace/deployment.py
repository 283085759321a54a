"""Deploy a materialized app directory (or a model, materialized on the fly) to Databricks Apps
with databricks-sdk.

Order, chosen so that a failure leaves nothing half-done: check the caller and the app
(read-only), upload the directory to a fresh content-addressed workspace folder and check it
landed as plain files, create the app or update only its ``resources`` (never ``apps.update``,
which clears what it is not given), bring compute up, deploy a SNAPSHOT and wait, then grant
permissions (merge). A failed or timed-out deployment never replaces the app's active one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from mlflow_app_agent.apps.workspace.sdk_calls import calling, sdk_message, workspace_client
from mlflow_app_agent.apps.workspace.upload import (
    MAX_FILE_BYTES,
    collect_files,
    content_hash,
    upload_dir,
)
from mlflow_app_agent.errors import ConfigError, DeployError, ModelLoadError
from mlflow_app_agent.model.app_dir import APP_YAML, MANIFEST_FILE

_APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,28}[a-z0-9]$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DeployResult:
    url: str | None
    app_name: str
    deployment_id: str
    source_code_path: str
    status: str


@dataclasses.dataclass(frozen=True)
class Grant:
    principal: str
    kind: str  # user_name | group_name | service_principal_name
    level: str  # CAN_USE | CAN_MANAGE


def parse_grant(spec: Any) -> Grant:
    """``PRINCIPAL:LEVEL``: an email is a user, a UUID a service principal's application id,
    anything else a group; ``user:``/``group:``/``sp:`` prefixes say it explicitly."""
    if isinstance(spec, Grant):
        return spec
    principal, level = (spec if isinstance(spec, tuple) else str(spec).rpartition(":")[::2])
    principal, level = str(principal).strip(), str(level).strip().upper()
    if level and not level.startswith("CAN_"):
        level = "CAN_" + level
    if not principal or level not in ("CAN_USE", "CAN_MANAGE"):
        raise ConfigError(f"grant {spec!r}: expected PRINCIPAL:CAN_USE or PRINCIPAL:CAN_MANAGE")
    prefix, sep, rest = principal.partition(":")
    kinds = {"user": "user_name", "group": "group_name", "sp": "service_principal_name",
             "service_principal": "service_principal_name"}
    if sep and prefix in kinds and rest:
        return Grant(rest, kinds[prefix], level)
    if "@" in principal:
        return Grant(principal, "user_name", level)
    if _UUID.match(principal):
        return Grant(principal, "service_principal_name", level)
    return Grant(principal, "group_name", level)


def check_arguments(app_name: str, grants: Iterable[Any] | None) -> list[Grant]:
    """The app name and grants, checked before any call (and before looking for credentials)."""
    if not _APP_NAME.match(app_name or ""):
        raise ConfigError(f"app name {app_name!r}: use 2-30 lowercase letters, digits and '-'")
    return [parse_grant(g) for g in grants or []]


class _Deadline:
    def __init__(self, seconds: float):
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def left(self) -> timedelta:
        return timedelta(seconds=max(0.5, self.end - time.monotonic()))


def _resolve_source(model_uri_or_dir: str | os.PathLike[str], tmp: Path,
                    say: Progress) -> Path:
    from mlflow_app_agent import apps

    path = Path(model_uri_or_dir)
    if path.is_dir() and (path / MANIFEST_FILE).is_file():
        try:
            verify = apps.verify
        except (AttributeError, ImportError):
            verify = None  # the manifest module is not installed: deploy as it is
        if verify is not None:
            say(f"verifying {path} against its {MANIFEST_FILE}")
            verify(path)
        return path
    if path.is_dir() and (path / APP_YAML).is_file():
        return path  # a hand-written Apps directory: deploy as it is
    say(f"materializing {model_uri_or_dir}")
    try:
        materialize = apps.materialize
    except (AttributeError, ImportError):
        raise DeployError("materialize is not available in this installation; deploy an "
                          "already materialized directory") from None
    return Path(materialize(str(model_uri_or_dir), tmp / "app", progress=say))


def _covers(have: Any, want: Any) -> bool:
    # the workspace may add fields of its own to a resource; only ours must match
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_covers(have.get(k), v) for k, v in want.items())
    return bool(have == want)


def _changed(current: list[Any], wanted: list[Any]) -> bool:
    have = {r.name: r.as_dict() for r in current}
    return any(not _covers(have.get(r.name), r.as_dict()) for r in wanted)


def deploy(
    model_uri_or_dir: str | os.PathLike[str],
    *,
    app_name: str,
    resources: Iterable[Any] | None = None,
    grants: Iterable[Any] | None = None,
    client: Any = None,
    description: str | None = None,
    timeout: float | timedelta = 1200.0,
    progress: Progress | None = None,
) -> DeployResult:
    """Deploy to the Databricks App ``app_name``; returns its URL and the new deployment.

    ``resources`` (Resource, dict or ``kind:key=value``) add to or replace, by name, the
    resources the model declares. ``grants`` are ``PRINCIPAL:CAN_USE|CAN_MANAGE``. ``client``
    defaults to ``WorkspaceClient()`` (the SDK's standard auth: profile, PAT, OAuth M2M).
    ``timeout`` bounds the whole deploy, waits included.
    """
    from mlflow_app_agent.apps.workspace.declared import declared_resources, merge_resources

    say: Progress = progress or (lambda _msg: None)
    grant_list = check_arguments(app_name, grants)
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    deadline = _Deadline(seconds)
    with tempfile.TemporaryDirectory(prefix="mlflow-app-agent-deploy-") as tmp:
        src = _resolve_source(model_uri_or_dir, Path(tmp), say)
        files = collect_files(src)
        try:
            declared = declared_resources(src)
        except ModelLoadError:
            declared = []  # a hand-written Apps directory without a model
        wanted = [r.to_app_resource() for r in merge_resources(declared, resources)]
        if client is None:
            client = workspace_client()
        return _deploy(client, src, files, app_name, wanted, grant_list, description,
                       deadline, say)


def _deploy(w: Any, src: Path, files: list[tuple[str, Path]], app_name: str,
            wanted: list[Any], grants: list[Grant], description: str | None,
            deadline: _Deadline, say: Progress) -> DeployResult:
    from databricks.sdk.errors import NotFound, OperationFailed, ResourceConflict
    from databricks.sdk.service.apps import (
        App,
        AppAccessControlRequest,
        AppDeployment,
        AppDeploymentMode,
        AppPermissionLevel,
        ComputeState,
    )

    manage = f"CAN_MANAGE on app {app_name}"
    with calling("current_user.me", "a valid identity"):
        me = w.current_user.me().user_name
    say(f"deploying as {me} to app {app_name}")
    app: Any = None
    with calling(f"apps.get({app_name})", f"CAN_USE or CAN_MANAGE on app {app_name}"):
        try:
            app = w.apps.get(app_name)
        except NotFound:
            app = None
    folder = f"/Workspace/Users/{me}/.mlflow-app-agent/{app_name}/{content_hash(files)}"
    upload_dir(w, folder, files, say)

    after_upload = f" The uploaded source stays at {folder}; nothing was deployed."
    if app is None:
        say(f"creating app {app_name}")
        spec = App(name=app_name, description=description, resources=wanted or None)
        need = ("the right to create apps in this workspace, and CAN_MANAGE on each declared "
                "resource so it can be granted to the app")
        with calling(f"apps.create({app_name})", need, after_upload):
            try:
                app = w.apps.create(spec).response
            except ResourceConflict:  # created concurrently by someone else: use it
                say(f"app {app_name} already exists (created concurrently)")
                app = w.apps.get(app_name)
    mask = []
    if wanted and _changed(app.resources or [], wanted):
        mask.append("resources")
    if description is not None and app.description != description:
        mask.append("description")
    if mask:
        # merge: keep resources someone else added, replace same-named ones
        merged = {r.name: r for r in app.resources or []} | {r.name: r for r in wanted}
        say(f"updating app {', '.join(mask)}")
        need = f"{manage} and CAN_MANAGE on each declared resource"
        with calling(f"apps.create_update({app_name}, update_mask={','.join(mask)})", need,
                      after_upload):
            try:
                w.apps.create_update(
                    app_name, ",".join(mask),
                    app=App(name=app_name, resources=list(merged.values()),
                            description=description),
                ).result(timeout=deadline.left())
            except OperationFailed as exc:
                raise DeployError(f"updating the resources of {app_name} failed: {exc}."
                                  f"{after_upload}") from None
            except TimeoutError:
                raise DeployError(f"timed out after {deadline.seconds:g}s waiting for the "
                                  f"resource update of {app_name} (apps.get_update)."
                                  f"{after_upload}") from None

    state = app.compute_status.state if app.compute_status else None
    if state != ComputeState.ACTIVE:
        say(f"app compute is {state.value if state else 'unknown'}; waiting for ACTIVE")
        with calling(f"apps.start({app_name})", manage, after_upload):
            try:
                if state in (ComputeState.STOPPING,):
                    w.apps.wait_get_app_stopped(app_name, timeout=deadline.left())
                    state = ComputeState.STOPPED
                if state in (ComputeState.STOPPED, ComputeState.ERROR):
                    w.apps.start(app_name).result(timeout=deadline.left())
                else:
                    w.apps.wait_get_app_active(app_name, timeout=deadline.left())
            except OperationFailed as exc:
                raise DeployError(f"the compute of app {app_name} did not become ACTIVE: "
                                  f"{exc}.{after_upload}") from None
            except TimeoutError:
                raise DeployError(f"timed out after {deadline.seconds:g}s waiting for the "
                                  f"compute of app {app_name} to become ACTIVE (apps.get)."
                                  f"{after_upload}") from None

    previous = app.active_deployment.deployment_id if app.active_deployment else None
    keeps = (f" The app keeps serving its previous deployment {previous}." if previous
             else " The app had no active deployment before.")
    with calling(f"apps.deploy({app_name})", manage, after_upload):
        waiter = w.apps.deploy(app_name, AppDeployment(
            source_code_path=folder, mode=AppDeploymentMode.SNAPSHOT))
    dep_id = waiter.response.deployment_id or waiter.deployment_id
    say(f"deployment {dep_id} started; waiting for SUCCEEDED")
    started = time.monotonic()
    last: list[str] = []

    def on_poll(d: Any) -> None:
        msg = f"{d.status.state.value if d.status and d.status.state else '?'}: " \
              f"{d.status.message if d.status else ''}"
        if not last or last[-1] != msg:
            say(f"  [{time.monotonic() - started:4.0f}s] {msg}")
            last.append(msg)

    with calling(f"apps.get_deployment({app_name}, {dep_id})", manage, keeps):
        try:
            done = waiter.result(timeout=deadline.left(), callback=on_poll)
        except OperationFailed:
            d = w.apps.get_deployment(app_name, dep_id)
            message = d.status.message if d.status else "no status message"
            raise DeployError(f"deployment {dep_id} of app {app_name} FAILED: {message}."
                              f"{keeps}") from None
        except TimeoutError:
            raise DeployError(f"timed out after {deadline.seconds:g}s waiting for deployment "
                              f"{dep_id} of app {app_name} to reach SUCCEEDED "
                              f"(apps.get_deployment); it may still finish.{keeps}") from None

    if grants:
        acl = [AppAccessControlRequest(permission_level=AppPermissionLevel(g.level),
                                       **{g.kind: g.principal}) for g in grants]
        say("granting " + ", ".join(f"{g.principal}:{g.level}" for g in grants))
        with calling(f"apps.update_permissions({app_name})", manage,
                      f" Deployment {dep_id} is live; re-run to apply the grants."):
            w.apps.update_permissions(app_name, access_control_list=acl)
    with calling(f"apps.get({app_name})", manage):
        final = w.apps.get(app_name)
    state_name = done.status.state.value if done.status and done.status.state else "SUCCEEDED"
    app_state = final.app_status.state.value if final.app_status and final.app_status.state \
        else "unknown"
    active = final.active_deployment.deployment_id if final.active_deployment else None
    if active != dep_id or app_state != "RUNNING":
        say(f"note: app {app_name} is {app_state} with active deployment {active}")
    say(f"deployed {app_name} (deployment {dep_id}): {final.url or '(no URL yet)'}")
    return DeployResult(url=final.url, app_name=app_name, deployment_id=dep_id,
                        source_code_path=folder, status=state_name)


__all__ = [
    "MAX_FILE_BYTES", "DeployResult", "Grant", "deploy", "parse_grant", "sdk_message",
    "workspace_client",
]
