"""Declared resources: what an agent needs in the workspace, said once at log time.

One declaration feeds every later stage: the MLmodel (our flavor conf and MLflow's own
``resources`` block where MLflow has a matching type), ``app.yaml`` (``valueFrom`` env),
the Databricks Apps ``AppResource`` list at deploy time, and ``check-auth`` probes.

Declare with :class:`Resource` or a dict, e.g.
``{"kind": "serving_endpoint", "name": "llm", "endpoint_name": "databricks-claude", "env":
"LLM_ENDPOINT"}``. Secrets are declared by scope and key; their values are never read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import pydantic

from mlflow_app_agent.errors import ConfigError

ResourceKind = Literal[
    "serving_endpoint",
    "secret",
    "sql_warehouse",
    "experiment",
    "genie_space",
    "uc_securable",
    "job",
    "database",
    "app",
]

# kind -> (required identifying fields, default permission)
_KIND_FIELDS: dict[str, tuple[tuple[str, ...], str]] = {
    "serving_endpoint": (("endpoint_name",), "CAN_QUERY"),
    "secret": (("scope", "key"), "READ"),
    "sql_warehouse": (("warehouse_id",), "CAN_USE"),
    "experiment": (("experiment_id",), "CAN_EDIT"),
    "genie_space": (("space_id",), "CAN_RUN"),
    "uc_securable": (("securable_type", "securable_full_name"), "USE_CONNECTION"),
    "job": (("job_id",), "CAN_MANAGE_RUN"),
    "database": (("instance_name", "database_name"), "CAN_CONNECT_AND_CREATE"),
    "app": (("app_name",), "CAN_USE"),
}
_UC_DEFAULT_PERMISSION = {
    "CONNECTION": "USE_CONNECTION",
    "FUNCTION": "EXECUTE",
    "TABLE": "SELECT",
    "VOLUME": "READ_VOLUME",
}
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Resource(pydantic.BaseModel):
    """One workspace resource the agent uses, as a Databricks App resource."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    kind: ResourceKind
    name: str = ""
    description: str | None = None
    permission: str | None = None
    env: str | None = None
    endpoint_name: str | None = None
    scope: str | None = None
    key: str | None = None
    warehouse_id: str | None = None
    experiment_id: str | None = None
    space_id: str | None = None
    securable_type: str | None = None
    securable_full_name: str | None = None
    job_id: str | None = None
    instance_name: str | None = None
    database_name: str | None = None
    app_name: str | None = None

    @pydantic.model_validator(mode="after")
    def _complete(self) -> Resource:
        required, default_permission = _KIND_FIELDS[self.kind]
        missing = [f for f in required if not getattr(self, f)]
        if missing:
            raise ValueError(f"a {self.kind} resource needs {', '.join(missing)}")
        if self.kind == "job" and not str(self.job_id).isdigit():
            raise ValueError(f"job_id must be the job's numeric id, got {self.job_id!r}")
        if self.kind == "uc_securable":
            st = str(self.securable_type).upper()
            if st not in _UC_DEFAULT_PERMISSION:
                raise ValueError(
                    f"securable_type must be one of {sorted(_UC_DEFAULT_PERMISSION)}, got {st!r}"
                )
            object.__setattr__(self, "securable_type", st)
            default_permission = _UC_DEFAULT_PERMISSION[st]
        if not self.permission:
            object.__setattr__(self, "permission", default_permission)
        if not self.name:
            ident = "-".join(str(getattr(self, f)) for f in required)
            object.__setattr__(self, "name", _slug(f"{self.kind}-{ident}"))
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"resource name {self.name!r} must be 1-64 letters, digits, '-' or '_'"
            )
        if self.env is not None and not _ENV_RE.match(self.env):
            raise ValueError(f"env {self.env!r} is not a valid environment variable name")
        return self

    @property
    def identity(self) -> str:
        """A human-readable id: ``secret scope/key``, ``serving_endpoint my-llm``."""
        required, _ = _KIND_FIELDS[self.kind]
        return "/".join(str(getattr(self, f)) for f in required)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)

    def field(self, name: str) -> str:
        """A field the validator guaranteed for this kind, as a string."""
        value = getattr(self, name)
        if value is None:  # pragma: no cover - prevented by _complete
            raise ConfigError(f"a {self.kind} resource needs {name}")
        return str(value)

    def to_app_resource(self) -> Any:
        """The databricks-sdk ``AppResource`` for this declaration."""
        from databricks.sdk.service import apps

        f, perm = self.field, self.permission
        builders: dict[str, Any] = {
            "serving_endpoint": lambda: apps.AppResourceServingEndpoint(
                name=f("endpoint_name"),
                permission=apps.AppResourceServingEndpointServingEndpointPermission(perm),
            ),
            "secret": lambda: apps.AppResourceSecret(
                scope=f("scope"), key=f("key"),
                permission=apps.AppResourceSecretSecretPermission(perm),
            ),
            "sql_warehouse": lambda: apps.AppResourceSqlWarehouse(
                id=f("warehouse_id"),
                permission=apps.AppResourceSqlWarehouseSqlWarehousePermission(perm),
            ),
            "experiment": lambda: apps.AppResourceExperiment(
                experiment_id=f("experiment_id"),
                permission=apps.AppResourceExperimentExperimentPermission(perm),
            ),
            "genie_space": lambda: apps.AppResourceGenieSpace(
                name=self.name, space_id=f("space_id"),
                permission=apps.AppResourceGenieSpaceGenieSpacePermission(perm),
            ),
            "uc_securable": lambda: apps.AppResourceUcSecurable(
                securable_full_name=f("securable_full_name"),
                securable_type=apps.AppResourceUcSecurableUcSecurableType(
                    f("securable_type")
                ),
                permission=apps.AppResourceUcSecurableUcSecurablePermission(perm),
            ),
            "job": lambda: apps.AppResourceJob(
                id=f("job_id"), permission=apps.AppResourceJobJobPermission(perm)
            ),
            "database": lambda: apps.AppResourceDatabase(
                instance_name=f("instance_name"), database_name=f("database_name"),
                permission=apps.AppResourceDatabaseDatabasePermission(perm),
            ),
            "app": lambda: apps.AppResourceApp(
                name=f("app_name"), permission=apps.AppResourceAppAppPermission(perm)
            ),
        }
        return apps.AppResource(
            name=self.name, description=self.description, **{self.kind: builders[self.kind]()}
        )

    def to_mlflow_resource(self) -> Any | None:
        """MLflow's own resource object where MLflow has one (for Model Serving parity)."""
        from mlflow.models import resources as r

        f = self.field
        if self.kind == "serving_endpoint":
            return r.DatabricksServingEndpoint(endpoint_name=f("endpoint_name"))
        if self.kind == "sql_warehouse":
            return r.DatabricksSQLWarehouse(warehouse_id=f("warehouse_id"))
        if self.kind == "genie_space":
            return r.DatabricksGenieSpace(genie_space_id=f("space_id"))
        uc_types = {
            "CONNECTION": lambda: r.DatabricksUCConnection(connection_name=f("securable_full_name")),
            "FUNCTION": lambda: r.DatabricksFunction(function_name=f("securable_full_name")),
            "TABLE": lambda: r.DatabricksTable(table_name=f("securable_full_name")),
        }
        if self.kind == "uc_securable" and self.securable_type in uc_types:
            return uc_types[self.securable_type]()
        return None


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", text).strip("-")
    return slug[:64] or "resource"


def parse_resources(items: Iterable[Any] | None) -> list[Resource]:
    """Normalize declarations (Resource, dict, or MLflow resource objects) into Resources.

    Raises :class:`ConfigError` naming the bad entry. Names must be unique.
    """
    out: list[Resource] = []
    for index, item in enumerate(items or []):
        try:
            if isinstance(item, Resource):
                res = item
            elif isinstance(item, Mapping):
                res = Resource.model_validate(dict(item))
            else:
                res = _from_mlflow_resource(item)
        except pydantic.ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'resource'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"resources[{index}] is invalid: {msgs}") from None
        out.append(res)
    seen: set[str] = set()
    for res in out:
        if res.name in seen:
            raise ConfigError(f"resource name {res.name!r} is declared twice")
        seen.add(res.name)
    return out


def parse_resource_spec(spec: str) -> Resource:
    """Parse the CLI form ``kind:key=value,key=value`` (e.g.
    ``serving_endpoint:endpoint_name=my-llm,env=LLM``)."""
    kind, _, rest = spec.partition(":")
    fields: dict[str, Any] = {"kind": kind.strip()}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ConfigError(f"resource spec {spec!r}: expected key=value, got {part!r}")
        fields[key.strip()] = value.strip()
    return parse_resources([fields])[0]


def _from_mlflow_resource(obj: Any) -> Resource:
    from mlflow.models import resources as r

    if isinstance(obj, r.DatabricksServingEndpoint):
        return Resource(kind="serving_endpoint", endpoint_name=obj.name)
    if isinstance(obj, r.DatabricksSQLWarehouse):
        return Resource(kind="sql_warehouse", warehouse_id=obj.name)
    if isinstance(obj, r.DatabricksGenieSpace):
        return Resource(kind="genie_space", space_id=obj.name)
    if isinstance(obj, r.DatabricksUCConnection):
        return Resource(kind="uc_securable", securable_type="CONNECTION",
                        securable_full_name=obj.name)
    if isinstance(obj, r.DatabricksFunction):
        return Resource(kind="uc_securable", securable_type="FUNCTION",
                        securable_full_name=obj.name)
    if isinstance(obj, r.DatabricksTable):
        return Resource(kind="uc_securable", securable_type="TABLE",
                        securable_full_name=obj.name)
    raise ConfigError(
        f"unsupported resource declaration of type {type(obj).__name__}; use a "
        "mlflow_app_agent.Resource or a dict with a 'kind'"
    )
