"""A small local Databricks workspace for tests: it speaks exactly the REST endpoints that
databricks-sdk calls for ``deploy`` and ``check-auth``, so the real SDK runs against it.

No workspace is reachable from here; this server keeps its state in memory and has switchable
failure modes (403 on chosen calls, a deployment that ends FAILED or never finishes, 409 on a
racing create, slow answers). Start it with ``with WorkspaceServer() as ws:`` and build a
client with ``ws.client()``.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "dapi-local-test-token-0123456789"

# What the Apps API takes, written down here independently of the toolkit's own lists:
# settable user-authorization scopes, compute sizes, and the horizontal-scaling range.
PLATFORM_SCOPES = frozenset({
    "sql", "dashboards.genie", "serving.serving-endpoints", "files.files",
    "vectorsearch.vector-search-indexes", "vectorsearch.vector-search-endpoints",
    "catalog.catalogs:read", "catalog.schemas:read", "catalog.tables:read",
    "catalog.connections",
})
PLATFORM_COMPUTE_SIZES = frozenset({"MEDIUM", "LARGE", "XLARGE"})
PLATFORM_INSTANCES = range(1, 6)
# the scope a user token needs for each call (the API scopes of those endpoints)
OP_SCOPES = {
    "genie.get_space": "dashboards.genie",
    "serving_endpoints.get": "serving.serving-endpoints",
    "warehouses.get": "sql",
    "volumes.read": "files.files",
    "tables.get": "catalog.tables:read",
    "connections.get": "catalog.connections",
}


class ApiError(Exception):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(message)
        self.status, self.error_code, self.message = status, error_code, message


@dataclasses.dataclass
class Failure:
    op: str
    status: int = 403
    error_code: str = "PERMISSION_DENIED"
    message: str = ""
    match: str | None = None  # only when this is in the URL or the body's "path"


def _canon(path: str) -> str:
    # The workspace accepts paths with and without the /Workspace prefix; it answers without.
    path = "/" + path.strip("/")
    if path == "/Workspace" or path.startswith("/Workspace/"):
        path = path[len("/Workspace"):] or "/"
    return path


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


class Workspace:
    """In-memory workspace state plus the request handlers (one per SDK call)."""

    def __init__(self, token: str = TOKEN, user_name: str = "dev@example.com"):
        self.lock = threading.RLock()
        self.token = token
        self.user_name = user_name
        self.host = ""  # set by WorkspaceServer
        self.apps: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, dict[str, Any]]] = {}
        self.deployed_files: dict[str, dict[str, bytes]] = {}  # deployment id -> snapshot
        self.updates: dict[str, dict[str, Any]] = {}
        self.app_acls: dict[str, dict[str, dict[str, Any]]] = {}
        self.objects: dict[str, dict[str, Any]] = {
            "/": {"object_type": "DIRECTORY"},
            "/Users": {"object_type": "DIRECTORY"},
        }
        self.serving_endpoints: dict[str, dict[str, Any]] = {}
        self.genie_spaces: dict[str, dict[str, Any]] = {}
        self.connections: dict[str, dict[str, Any]] = {}
        self.functions: dict[str, dict[str, Any]] = {}
        self.tables: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.warehouses: dict[str, dict[str, Any]] = {}
        self.experiments: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.database_instances: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, bytes]] = {}  # scope -> key -> value
        self.calls: list[tuple[str, str]] = []  # (op, path?query)
        self.requests: list[dict[str, Any]] = []  # every routed request: op, method, path, body
        self.auth_headers: list[str] = []
        # signed-in users' tokens, as the Apps proxy forwards them: token -> user and scopes
        self.user_tokens: dict[str, dict[str, Any]] = {}
        # failure modes
        self.failures: list[Failure] = []
        self.delays: dict[str, float] = {}
        # requests inside their delay right now, and the most seen at once (concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self.deployment_outcome = "SUCCEEDED"  # or "FAILED", or "NEVER" (stays IN_PROGRESS)
        self.deployment_failure_message = (
            "Error installing packages: requirements.txt line 3: no matching distribution"
        )
        self.create_race = False  # create answers 409 as if another client had just created it
        self.compute_stuck = False  # compute stays STARTING forever

    # --- test helpers -------------------------------------------------------------------

    def fail(self, op: str, status: int = 403, *, match: str | None = None,
             error_code: str | None = None, message: str | None = None) -> None:
        codes = {403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST",
                 409: "RESOURCE_ALREADY_EXISTS", 401: "UNAUTHENTICATED", 500: "INTERNAL_ERROR"}
        self.failures.append(Failure(
            op, status, error_code or codes.get(status, "BAD_REQUEST"),
            message or f"User {self.user_name} does not have permission for {op}", match))

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def bodies(self, op: str) -> list[Any]:
        """The JSON bodies the client sent for ``op``, in order."""
        return [r["body"] for r in self.requests if r["op"] == op]

    def add_user_token(self, token: str, user_name: str, scopes: set[str]) -> None:
        self.user_tokens[token] = {"user_name": user_name, "scopes": set(scopes)}

    def _check_app_spec(self, spec: dict[str, Any], fields: list[str] | None = None) -> None:
        """400s the Apps API answers for scopes, compute size and instance counts."""
        def given(key: str) -> bool:
            return key in spec and (fields is None or key in fields)

        if given("user_api_scopes"):
            bad = [s for s in spec["user_api_scopes"] or [] if s not in PLATFORM_SCOPES]
            if bad:
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               f"Invalid user API scopes: {', '.join(bad)}")
        if given("compute_size") and spec["compute_size"] not in PLATFORM_COMPUTE_SIZES:
            raise ApiError(400, "INVALID_PARAMETER_VALUE",
                           f"Invalid compute size: {spec['compute_size']}")
        low, high = spec.get("compute_min_instances"), spec.get("compute_max_instances")
        if given("compute_min_instances") or given("compute_max_instances"):
            if (low is None) != (high is None):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "compute_min_instances and "
                               "compute_max_instances must be set together")
            if low not in PLATFORM_INSTANCES or high not in PLATFORM_INSTANCES or low > high:
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               f"Instance counts must satisfy 1 <= min <= max <= 5, got "
                               f"min={low} max={high}")

    def add_app(self, name: str, *, compute: str = "ACTIVE", **fields: Any) -> dict[str, Any]:
        app = self._new_app({"name": name, **fields})
        app["compute_status"] = {"state": compute, "message": f"App compute is {compute}"}
        self.apps[name] = app
        return app

    def files_under(self, folder: str) -> dict[str, dict[str, Any]]:
        root = _canon(folder)
        return {p[len(root) + 1:]: o for p, o in self.objects.items()
                if p.startswith(root + "/") and o["object_type"] != "DIRECTORY"}

    # --- dispatch ---------------------------------------------------------------------

    def routes(self) -> list[tuple[str, re.Pattern[str], str, Callable[..., Any]]]:
        table: list[tuple[str, str, str, Callable[..., Any]]] = [
            ("GET", r"/api/2\.0/preview/scim/v2/Me", "current_user.me", self.me),
            ("GET", r"/api/2\.0/apps/(?P<name>[^/]+)", "apps.get", self.app_get),
            ("POST", r"/api/2\.0/apps", "apps.create", self.app_create),
            ("PATCH", r"/api/2\.0/apps/(?P<name>[^/]+)", "apps.update", self.app_patch),
            ("POST", r"/api/2\.0/apps/(?P<name>[^/]+)/start", "apps.start", self.app_start),
            ("POST", r"/api/2\.0/apps/(?P<name>[^/]+)/update", "apps.create_update",
             self.app_create_update),
            ("GET", r"/api/2\.0/apps/(?P<name>[^/]+)/update", "apps.get_update",
             self.app_get_update),
            ("POST", r"/api/2\.0/apps/(?P<name>[^/]+)/deployments", "apps.deploy",
             self.app_deploy),
            ("GET", r"/api/2\.0/apps/(?P<name>[^/]+)/deployments/(?P<dep>[^/]+)",
             "apps.get_deployment", self.app_get_deployment),
            ("GET", r"/api/2\.0/permissions/apps/(?P<name>[^/]+)", "apps.get_permissions",
             self.app_get_permissions),
            ("PATCH", r"/api/2\.0/permissions/apps/(?P<name>[^/]+)", "apps.update_permissions",
             self.app_update_permissions),
            ("PUT", r"/api/2\.0/permissions/apps/(?P<name>[^/]+)", "apps.set_permissions",
             self.app_set_permissions),
            ("POST", r"/api/2\.0/workspace/mkdirs", "workspace.mkdirs", self.ws_mkdirs),
            ("POST", r"/api/2\.0/workspace/import", "workspace.import", self.ws_import),
            ("GET", r"/api/2\.0/workspace/get-status", "workspace.get_status", self.ws_status),
            ("GET", r"/api/2\.0/workspace/list", "workspace.list", self.ws_list),
            ("POST", r"/api/2\.0/workspace/delete", "workspace.delete", self.ws_delete),
            ("GET", r"/api/2\.0/serving-endpoints/(?P<name>[^/]+)", "serving_endpoints.get",
             self._getter(self.serving_endpoints, "serving endpoint")),
            ("GET", r"/api/2\.0/genie/spaces/(?P<name>[^/]+)", "genie.get_space",
             self._getter(self.genie_spaces, "Genie space")),
            ("GET", r"/api/2\.1/unity-catalog/connections/(?P<name>[^/]+)", "connections.get",
             self._getter(self.connections, "connection")),
            ("GET", r"/api/2\.1/unity-catalog/functions/(?P<name>[^/]+)", "functions.get",
             self._getter(self.functions, "function")),
            ("GET", r"/api/2\.1/unity-catalog/tables/(?P<name>[^/]+)", "tables.get",
             self._getter(self.tables, "table")),
            ("GET", r"/api/2\.1/unity-catalog/volumes/(?P<name>[^/]+)", "volumes.read",
             self._getter(self.volumes, "volume")),
            ("GET", r"/api/2\.0/sql/warehouses/(?P<name>[^/]+)", "warehouses.get",
             self._getter(self.warehouses, "SQL warehouse")),
            ("GET", r"/api/2\.0/mlflow/experiments/get", "experiments.get_experiment",
             self.experiment_get),
            ("GET", r"/api/2\.[12]/jobs/get", "jobs.get", self.job_get),
            ("GET", r"/api/2\.0/database/instances/(?P<name>[^/]+)",
             "database.get_database_instance",
             self._getter(self.database_instances, "database instance")),
            ("GET", r"/api/2\.0/secrets/list", "secrets.list_secrets", self.secrets_list),
            ("GET", r"/api/2\.0/secrets/get", "secrets.get_secret", self.secret_get),
        ]
        return [(m, re.compile(p + "$"), op, fn) for m, p, op, fn in table]

    # --- identity -----------------------------------------------------------------------

    def me(self, q: dict[str, str], body: Any, *, user: str | None = None) -> dict[str, Any]:
        return {"id": "1001", "userName": user or self.user_name, "displayName": "Dev",
                "active": True}

    # --- apps -------------------------------------------------------------------------

    def _new_app(self, spec: dict[str, Any]) -> dict[str, Any]:
        name = spec["name"]
        return {
            **spec,
            "id": uuid.uuid5(uuid.NAMESPACE_URL, name).hex,
            "url": f"https://{name}-1234567890.aws.databricksapps.com",
            "service_principal_client_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "service_principal_name": f"app-{name}",
            "app_status": {"state": "UNAVAILABLE", "message": "App has not been deployed"},
            "compute_status": {"state": "STARTING", "message": "App compute is starting"},
            "creator": self.user_name,
        }

    def _app(self, name: str) -> dict[str, Any]:
        if name not in self.apps:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"App with name {name} does not exist")
        return self.apps[name]

    def app_get(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        app = self._app(name)
        # compute comes up between two polls: STARTING on one answer, ACTIVE on the next
        if app["compute_status"]["state"] == "STARTING" and not self.compute_stuck:
            if app.pop("_starting_seen", False):
                app["compute_status"] = {"state": "ACTIVE", "message": "App compute is active"}
            else:
                app["_starting_seen"] = True
        return {k: v for k, v in app.items() if not k.startswith("_")}

    def app_create(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        name = body.get("name", "")
        if not re.fullmatch(r"[a-z0-9-]{2,30}", name):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Invalid app name {name!r}")
        self._check_app_spec(body)
        if self.create_race and name not in self.apps:
            self.apps[name] = self._new_app(body)
            self.create_race = False
        if name in self.apps:
            raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"An app with name {name} already "
                           "exists. Choose a different name.")
        self.apps[name] = self._new_app(body)
        self.app_acls[name] = {self.user_name: {"user_name": self.user_name,
                                                "permission_level": "CAN_MANAGE"}}
        return self.app_get(q, body, name)

    def app_patch(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        # apps.update replaces the spec: what the caller leaves out is cleared
        app = self._app(name)
        self._check_app_spec(body)
        for key in ("description", "resources", "user_api_scopes", "compute_size",
                    "compute_min_instances", "compute_max_instances"):
            app.pop(key, None)
        app.update({k: v for k, v in body.items() if k != "name"})
        return self.app_get(q, body, name)

    def app_start(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        app = self._app(name)
        if app["compute_status"]["state"] in ("STOPPED", "ERROR"):
            app["compute_status"] = {"state": "STARTING", "message": "App compute is starting"}
        return self.app_get(q, body, name)

    def app_create_update(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        app = self._app(name)
        mask = body.get("update_mask", "")
        spec = body.get("app") or {}
        fields = list(spec) if mask == "*" else [f for f in mask.split(",") if f]
        self._check_app_spec(spec, fields)
        compute_changed = any(f.startswith("compute_") for f in fields if
                              app.get(f) != spec.get(f))
        for field in fields:
            if field in spec:
                app[field] = spec[field]
            else:
                app.pop(field, None)
        if compute_changed:  # a new size or count restarts the app's compute
            app["compute_status"] = {"state": "STARTING", "message": "App compute is starting"}
            app.pop("_starting_seen", None)
        self.updates[name] = {"status": {"state": "IN_PROGRESS", "message": "Updating"},
                              **{f: spec.get(f) for f in fields}}
        return self.updates[name]

    def app_get_update(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        if name not in self.updates:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No update for app {name}")
        self.updates[name]["status"] = {"state": "SUCCEEDED", "message": "Update succeeded"}
        return self.updates[name]

    def app_deploy(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        app = self._app(name)
        state = app["compute_status"]["state"]
        if state != "ACTIVE":
            raise ApiError(400, "INVALID_STATE", f"Cannot deploy app {name}: compute is {state}; "
                           "start the app first")
        src = _canon(body.get("source_code_path", ""))
        if self.objects.get(src, {}).get("object_type") != "DIRECTORY":
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Source code path {src} not found")
        dep_id = uuid.uuid4().hex
        dep = {"deployment_id": dep_id, "source_code_path": body["source_code_path"],
               "mode": body.get("mode"), "creator": self.user_name,
               "status": {"state": "IN_PROGRESS", "message": "Preparing source code"},
               "deployment_artifacts": {"source_code_path": f"/snapshots/{dep_id}"}}
        self.deployments.setdefault(name, {})[dep_id] = dep
        self.deployed_files[dep_id] = {p: o["content"] for p, o in self.files_under(src).items()}
        app["pending_deployment"] = dep
        return dep

    def app_get_deployment(self, q: dict[str, str], body: Any, name: str,
                           dep: str) -> dict[str, Any]:
        app = self._app(name)
        d = self.deployments.get(name, {}).get(dep)
        if d is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Deployment {dep} not found")
        if d["status"]["state"] == "IN_PROGRESS" and self.deployment_outcome != "NEVER":
            if self.deployment_outcome == "SUCCEEDED":
                d["status"] = {"state": "SUCCEEDED", "message": "App started successfully"}
                app["active_deployment"] = d
                app["app_status"] = {"state": "RUNNING", "message": "App is running"}
            else:
                d["status"] = {"state": "FAILED", "message": self.deployment_failure_message}
            app.pop("pending_deployment", None)
        return d

    def _acl_response(self, name: str) -> dict[str, Any]:
        acl = [{k: v for k, v in e.items() if k != "permission_level"} |
               {"all_permissions": [{"permission_level": e["permission_level"],
                                     "inherited": False}]}
               for e in self.app_acls.get(name, {}).values()]
        return {"object_id": f"/apps/{self._app(name)['id']}", "object_type": "apps",
                "access_control_list": acl}

    def app_get_permissions(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        return self._acl_response(name)

    def app_update_permissions(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        self._app(name)
        acls = self.app_acls.setdefault(name, {})
        for entry in body.get("access_control_list", []):
            if entry.get("permission_level") not in ("CAN_USE", "CAN_MANAGE"):
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               f"Invalid permission level {entry.get('permission_level')}")
            who = entry.get("user_name") or entry.get("group_name") or \
                entry.get("service_principal_name")
            if not who:
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "ACL entry names no principal")
            acls[who] = entry
        return self._acl_response(name)

    def app_set_permissions(self, q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
        self.app_acls[name] = {}
        return self.app_update_permissions(q, body, name)

    # --- workspace files ----------------------------------------------------------------

    def ws_mkdirs(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        path = _canon(body["path"])
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            kind = self.objects.get(p, {}).get("object_type")
            if kind not in (None, "DIRECTORY"):
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{p} exists and is a {kind}")
            self.objects.setdefault(p, {"object_type": "DIRECTORY"})
        return {}

    def ws_import(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        path = _canon(body["path"])
        content: bytes = body["content"]
        fmt = body.get("format") or "SOURCE"
        if self.objects.get(_parent(path), {}).get("object_type") != "DIRECTORY":
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                           f"The parent folder ({_parent(path)}) does not exist.")
        if len(content) > 10 * 1024 * 1024:
            raise ApiError(400, "MAX_NOTEBOOK_SIZE_EXCEEDED", f"{path} is larger than 10 MB")
        # What the real importer does with a .py file: SOURCE makes it a notebook; AUTO makes
        # it a notebook when it starts with the notebook header; RAW keeps a plain file.
        notebook = path.endswith(".py") and (
            fmt == "SOURCE" or
            (fmt == "AUTO" and content.startswith(b"# Databricks notebook source")))
        if notebook:
            path = path[: -len(".py")]
        if path in self.objects and body.get("overwrite") not in ("true", True):
            raise ApiError(409, "RESOURCE_ALREADY_EXISTS", f"{path} already exists")
        self.objects[path] = {"object_type": "NOTEBOOK" if notebook else "FILE",
                              "content": content, "format": fmt,
                              **({"language": "PYTHON"} if notebook else {})}
        return {}

    def _info(self, path: str) -> dict[str, Any]:
        obj = self.objects[path]
        info = {"path": path, "object_type": obj["object_type"],
                "object_id": abs(hash(path)) % 10**12}
        if "language" in obj:
            info["language"] = obj["language"]
        if "content" in obj:
            info["size"] = len(obj["content"])
        return info

    def ws_status(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        path = _canon(q.get("path", ""))
        if path not in self.objects:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
        return self._info(path)

    def ws_list(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        path = _canon(q.get("path", ""))
        if self.objects.get(path, {}).get("object_type") != "DIRECTORY":
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
        kids = sorted(p for p in self.objects if p != path and _parent(p) == path)
        return {"objects": [self._info(p) for p in kids]}

    def ws_delete(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        path = _canon(body["path"])
        if path not in self.objects:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
        inside = [p for p in self.objects if p.startswith(path + "/")]
        if inside and not body.get("recursive"):
            raise ApiError(400, "DIRECTORY_NOT_EMPTY", f"Folder ({path}) is not empty")
        for p in [path, *inside]:
            del self.objects[p]
        return {}

    # --- resources ----------------------------------------------------------------------

    def _getter(self, store: dict[str, dict[str, Any]], what: str) -> Callable[..., Any]:
        def get(q: dict[str, str], body: Any, name: str) -> dict[str, Any]:
            if name not in store:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"{what} {name} does not exist")
            return store[name]
        return get

    def experiment_get(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        exp = self.experiments.get(q.get("experiment_id", ""))
        if exp is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                           f"No Experiment with id={q.get('experiment_id')} exists")
        return {"experiment": exp}

    def job_get(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        job = self.jobs.get(q.get("job_id", ""))
        if job is None:
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"Job {q.get('job_id')} does not exist.")
        return job

    def secrets_list(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        scope = q.get("scope", "")
        if scope not in self.secrets:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Scope {scope} does not exist!")
        return {"secrets": [{"key": k, "last_updated_timestamp": 0}
                            for k in sorted(self.secrets[scope])]}

    def secret_get(self, q: dict[str, str], body: Any) -> dict[str, Any]:
        value = self.secrets.get(q.get("scope", ""), {}).get(q.get("key", ""))
        if value is None:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", "Secret does not exist")
        return {"key": q["key"], "value": base64.b64encode(value).decode()}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: avoid 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
            fields: dict[str, Any] = {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                fields[str(name)] = payload if name == "content" else payload.decode()
            return fields
        if not raw:
            return {}
        body = json.loads(raw)
        if isinstance(body, dict) and isinstance(body.get("content"), str):
            body["content"] = base64.b64decode(body["content"])  # workspace.import_ JSON form
        return body

    def _handle(self, method: str) -> None:
        ws = self.server.workspace
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body() if method in ("POST", "PATCH", "PUT") else {}
        if url.path == "/.well-known/databricks-config":
            return self._send(404, {"error_code": "NOT_FOUND", "message": "no host metadata"})
        for m, pattern, op, fn in ws.routes():
            match = pattern.match(url.path)
            if m != method or not match:
                continue
            with ws.lock:
                ws.calls.append((op, self.path))
                ws.requests.append({"op": op, "method": method, "path": self.path,
                                    "body": body})
                ws.auth_headers.append(self.headers.get("Authorization", ""))
                where = unquote(self.path) + " " + str(
                    body.get("path", "") if isinstance(body, dict) else "")
                failure = next((f for f in ws.failures if f.op == op and
                                (f.match is None or f.match in where)), None)
                delay = ws.delays.get(op, 0.0)
            if delay:
                with ws.lock:
                    ws.in_flight += 1
                    ws.max_in_flight = max(ws.max_in_flight, ws.in_flight)
                try:
                    time.sleep(delay)
                finally:
                    with ws.lock:
                        ws.in_flight -= 1
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
            user = ws.user_tokens.get(bearer)
            if bearer != ws.token and user is None:
                return self._send(401, {"error_code": "UNAUTHENTICATED",
                                        "message": "Invalid access token."})
            if user is not None and op in OP_SCOPES and OP_SCOPES[op] not in user["scopes"]:
                # the platform's answer when a user token lacks an API's scope
                return self._send(403, {
                    "error_code": "PERMISSION_DENIED",
                    "message": f"Provided OAuth token does not have required scopes: "
                               f"{OP_SCOPES[op]}"})
            if failure is not None:
                return self._send(failure.status, {"error_code": failure.error_code,
                                                   "message": failure.message})
            try:
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                if op == "current_user.me" and user is not None:
                    args["user"] = user["user_name"]
                with ws.lock:
                    result = fn(query, body, **args)
            except ApiError as exc:
                return self._send(exc.status, {"error_code": exc.error_code,
                                               "message": exc.message})
            return self._send(200, result)
        self._send(404, {"error_code": "ENDPOINT_NOT_FOUND",
                         "message": f"No API found for '{method} {url.path}'"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    workspace: Workspace


class WorkspaceServer:
    """``with WorkspaceServer() as ws:`` serves a fresh :class:`Workspace` on 127.0.0.1."""

    def __init__(self, workspace: Workspace | None = None):
        self.workspace = workspace or Workspace()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.workspace = self.workspace
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> Workspace:
        self._thread.start()
        self.workspace.host = self.host
        return self.workspace

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def client_for(ws: Workspace, **config: Any) -> Any:
    """The real SDK client, pointed at the local server with a PAT."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=ws.host, token=ws.token, auth_type="pat", **config)


def build_app_dir(root: Any, resources: list[dict[str, Any]] | None = None,
                  mode: str = "pip") -> Any:
    """A small materialized app directory, built by hand (MANIFEST.json included), whose
    ``model/code/agent.py`` starts with the notebook header a wrong import format converts."""
    from pathlib import Path

    import yaml

    from mlflow_app_agent.apps.build.manifest import write_manifest

    root = Path(root)
    declared = resources if resources is not None else [
        {"kind": "serving_endpoint", "name": "llm", "endpoint_name": "my-llm", "env": "LLM"},
        {"kind": "experiment", "name": "traces", "experiment_id": "42",
         "env": "MLFLOW_EXPERIMENT_ID"},
    ]
    files = {
        "app.yaml": "command: [python, -m, mlflow_app_agent.server, --model, model]\n",
        **({"requirements.txt": "mlflow-skinny==3.6.0\n"} if mode == "pip" else {
            "pyproject.toml": '[project]\nname = "app"\nversion = "0.0.0"\n'
                              'requires-python = "==3.11.*"\ndependencies = []\n',
            "uv.lock": 'version = 1\nrequires-python = "==3.11.*"\n'}),
        "README.md": "# app\n",
        "model/MLmodel": yaml.safe_dump({"flavors": {
            "mlflow_app_agent": {"resources": declared},
            "python_function": {"loader_module": "mlflow_app_agent.flavor"}}}),
        "model/code/agent.py": "# Databricks notebook source\nprint('agent')\n",
        "model/code/tools.py": "def tool():\n    return 1\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    write_manifest(root, {"source_uri": "models:/demo/1", "resources": declared,
                          "dependencies": {"installer": mode}})
    return root
