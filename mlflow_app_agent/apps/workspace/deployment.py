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
from mlflow_app_agent.deploy_spec import DeploySpec, check_app_name, scopes_for
from mlflow_app_agent.errors import ConfigError, DeployError, ModelLoadError
from mlflow_app_agent.model.app_dir import APP_YAML, MANIFEST_FILE

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DeployResult:
    url: str | None
    app_name: str
    deployment_id: str
    source_code_path: str
    status: str
    spec: DeploySpec = DeploySpec()


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


@dataclasses.dataclass(frozen=True)
class Checked:
    """Every deploy argument, parsed: nothing here needs the workspace."""
    grants: list[Grant]
    resources: list[Any]  # Resource
    spec: DeploySpec


def check_arguments(app_name: str, grants: Iterable[Any] | None, *,
                    resources: Iterable[Any] | None = None,
                    user_api_scopes: Iterable[str] | None = None,
                    compute_size: str | None = None, instances: Any = None) -> Checked:
    """The app name, grants, extra resources, scopes and compute, checked before any call
    (and before looking for credentials)."""
    from mlflow_app_agent.apps.workspace.declared import merge_resources

    check_app_name(app_name)
    return Checked(grants=[parse_grant(g) for g in grants or []],
                   resources=merge_resources([], resources),
                   spec=DeploySpec.build(user_api_scopes=user_api_scopes,
                                         compute_size=compute_size, instances=instances))


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
    user_api_scopes: Iterable[str] | None = None,
    compute_size: str | None = None,
    instances: Any = None,
    client: Any = None,
    description: str | None = None,
    timeout: float | timedelta = 1200.0,
    progress: Progress | None = None,
) -> DeployResult:
    """Deploy to the Databricks App ``app_name``; returns its URL and the new deployment.

    ``resources`` (Resource, dict or ``kind:key=value``) add to or replace, by name, the
    resources the model declares. ``grants`` are ``PRINCIPAL:CAN_USE|CAN_MANAGE``.
    ``user_api_scopes`` add to the scopes the model declares (and those its ``auth: user``
    resources need); ``compute_size`` (MEDIUM, LARGE, ...) and ``instances`` (``N`` or
    ``(min, max)``/``"MIN:MAX"``, 1-5) replace the declared ones. ``client`` defaults to
    ``WorkspaceClient()`` (the SDK's standard auth: profile, PAT, OAuth M2M). ``timeout``
    bounds the whole deploy, waits included.
    """
    from mlflow_app_agent.apps.workspace.declared import declared, merge_resources

    say: Progress = progress or (lambda _msg: None)
    checked = check_arguments(app_name, grants, resources=resources,
                              user_api_scopes=user_api_scopes, compute_size=compute_size,
                              instances=instances)
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
    deadline = _Deadline(seconds)
    with tempfile.TemporaryDirectory(prefix="mlflow-app-agent-deploy-") as tmp:
        src = _resolve_source(model_uri_or_dir, Path(tmp), say)
        files = collect_files(src)
        try:
            declared_res, declared_spec = declared(src)
        except ModelLoadError:
            declared_res, declared_spec = [], DeploySpec()  # a hand-written Apps directory
        merged = merge_resources(declared_res, checked.resources)
        spec = declared_spec.merged(checked.spec)
        spec = spec.model_copy(update={"user_api_scopes": tuple(
            scopes_for(merged, spec.user_api_scopes))})
        wanted = [r.to_app_resource() for r in merged if r.grants_app]
        if client is None:
            client = workspace_client()
        return _deploy(client, src, files, app_name, wanted, spec, checked.grants,
                       description, deadline, say)


def _app_fields(spec: DeploySpec) -> dict[str, Any]:
    """``App`` keyword arguments for what ``spec`` sets."""
    from databricks.sdk.service.apps import App, ComputeSize

    out: dict[str, Any] = {}
    if spec.user_api_scopes:
        out["user_api_scopes"] = list(spec.user_api_scopes)
    if spec.compute_size:
        out["compute_size"] = ComputeSize(spec.compute_size)
    if spec.instances:
        if "compute_min_instances" not in {f.name for f in dataclasses.fields(App)}:
            raise DeployError("--instances needs a databricks-sdk whose App has "
                              "compute_min_instances/compute_max_instances (0.167 or newer)")
        out["compute_min_instances"], out["compute_max_instances"] = spec.instances
    return out


def _spec_changes(app: Any, spec: DeploySpec) -> tuple[list[str], dict[str, Any], list[str]]:
    """(update mask fields, App fields to send, human-readable changes) for ``spec``."""
    mask: list[str] = []
    fields: dict[str, Any] = {}
    said: list[str] = []
    have_scopes = set(app.user_api_scopes or [])
    missing = [s for s in spec.user_api_scopes if s not in have_scopes]
    if missing:
        # merge: keep scopes someone else added, as with resources
        mask.append("user_api_scopes")
        fields["user_api_scopes"] = sorted(have_scopes | set(spec.user_api_scopes))
        said.append("user_api_scopes + " + ", ".join(missing))
    wanted = _app_fields(spec)
    have_size = app.compute_size.value if app.compute_size is not None else None
    if spec.compute_size and have_size != spec.compute_size:
        mask.append("compute_size")
        fields["compute_size"] = wanted["compute_size"]
        said.append(f"compute_size {have_size or 'default'} -> {spec.compute_size}")
    if spec.instances:
        have = (getattr(app, "compute_min_instances", None),
                getattr(app, "compute_max_instances", None))
        if have != spec.instances:
            mask += ["compute_min_instances", "compute_max_instances"]
            fields["compute_min_instances"] = wanted["compute_min_instances"]
            fields["compute_max_instances"] = wanted["compute_max_instances"]
            before = f"{have[0]}:{have[1]}" if have[0] is not None else "default"
            said.append(f"instances {before} -> {spec.instances[0]}:{spec.instances[1]}")
    return mask, fields, said


def _deploy(w: Any, src: Path, files: list[tuple[str, Path]], app_name: str,
            wanted: list[Any], spec: DeploySpec, grants: list[Grant],
            description: str | None, deadline: _Deadline, say: Progress) -> DeployResult:
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
        new = App(name=app_name, description=description, resources=wanted or None,
                  **_app_fields(spec))
        if spec.user_api_scopes or spec.compute_size or spec.instances:
            say(f"  with {spec.describe()}")
        need = ("the right to create apps in this workspace, and CAN_MANAGE on each declared "
                "resource so it can be granted to the app")
        with calling(f"apps.create({app_name})", need, after_upload):
            try:
                app = w.apps.create(new).response
            except ResourceConflict:  # created concurrently by someone else: use it
                say(f"app {app_name} already exists (created concurrently)")
                app = w.apps.get(app_name)
    mask = []
    if wanted and _changed(app.resources or [], wanted):
        mask.append("resources")
    if description is not None and app.description != description:
        mask.append("description")
    spec_mask, spec_fields, spec_said = _spec_changes(app, spec)
    mask += spec_mask
    if mask:
        # merge: keep resources someone else added, replace same-named ones
        merged = {r.name: r for r in app.resources or []} | {r.name: r for r in wanted}
        changes = [m for m in mask if m in ("resources", "description")] + spec_said
        say(f"updating app {app_name}: {'; '.join(changes)}")
        need = f"{manage} and CAN_MANAGE on each declared resource"
        with calling(f"apps.create_update({app_name}, update_mask={','.join(mask)})", need,
                      after_upload):
            try:
                w.apps.create_update(
                    app_name, ",".join(mask),
                    app=App(name=app_name, resources=list(merged.values()),
                            description=description, **spec_fields),
                ).result(timeout=deadline.left())
            except OperationFailed as exc:
                raise DeployError(f"updating {', '.join(mask)} of {app_name} failed: {exc}."
                                  f"{after_upload}") from None
            except TimeoutError:
                raise DeployError(f"timed out after {deadline.seconds:g}s waiting for the "
                                  f"update of {app_name} (apps.get_update)."
                                  f"{after_upload}") from None
        if spec_mask:  # compute changes restart the compute: read its state again
            with calling(f"apps.get({app_name})", manage, after_upload):
                app = w.apps.get(app_name)

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
    live = DeploySpec(
        user_api_scopes=tuple(sorted(final.user_api_scopes or [])),
        compute_size=final.compute_size.value if final.compute_size is not None else None,
        min_instances=getattr(final, "compute_min_instances", None),
        max_instances=getattr(final, "compute_max_instances", None))
    say(f"deployed {app_name} (deployment {dep_id}): {final.url or '(no URL yet)'} "
        f"[{live.describe()}]")
    return DeployResult(url=final.url, app_name=app_name, deployment_id=dep_id,
                        source_code_path=folder, status=state_name, spec=live)


__all__ = [
    "MAX_FILE_BYTES", "DeployResult", "Grant", "deploy", "parse_grant", "sdk_message",
    "workspace_client",
]
