"""Declared resources: what an agent needs in the workspace, said once at log time.

One declaration feeds every later stage: the MLmodel (our flavor conf and MLflow's own
``resources`` block where MLflow has a matching type), ``app.yaml`` (``valueFrom`` env),
the Databricks Apps ``AppResource`` list and ``user_api_scopes`` at deploy time, and
``check-auth`` probes.

Declare with :class:`Resource` or a dict, e.g.
``{"kind": "serving_endpoint", "name": "llm", "endpoint_name": "databricks-claude", "env":
"LLM_ENDPOINT"}``. ``auth`` says whose identity uses it: ``"app"`` (default: a grant to the
app's service principal), ``"user"`` (the signed-in user's forwarded token: the app gets
the user API scopes the kind needs, no grant) or ``"both"``. Secrets are declared by scope
and key; their values are never read here.

Each kind is its own pydantic model (``ServingEndpointResource``, ...), joined in a union
discriminated by ``kind``; ``Resource(kind=..., ...)`` and ``Resource.model_validate`` pick
the model, so a missing field is reported for that kind.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal

import pydantic

from mlflow_app_agent.errors import ConfigError

AuthMode = Literal["app", "user", "both"]
ResourceKind = Literal[
    "serving_endpoint", "secret", "sql_warehouse", "experiment", "genie_space",
    "uc_securable", "job", "database", "app",
]
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Resource(pydantic.BaseModel):
    """One workspace resource the agent uses, as a Databricks App resource.

    ``Resource(kind=..., ...)`` returns the model of that kind (e.g. a
    :class:`GenieSpaceResource`); each kind's fields are its own."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    IDENTITY: ClassVar[tuple[str, ...]] = ()
    DEFAULT_PERMISSION: ClassVar[str] = ""
    USER_SCOPES: ClassVar[tuple[str, ...]] = ()  # what auth "user" needs; () = no user auth

    kind: str
    name: str = ""
    description: str | None = None
    permission: str | None = None
    env: str | None = None
    auth: AuthMode = "app"

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Resource and kwargs:
            # the kind's model, validated; Python then runs its __init__ once more with the
            # same arguments (idempotent), since it is an instance of Resource
            return _validate(kwargs)
        return super().__new__(cls)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Any:
        if cls is Resource:
            return _validate(obj)
        return super().model_validate(obj, *args, **kwargs)

    def _default_permission(self) -> str:
        return self.DEFAULT_PERMISSION

    @pydantic.model_validator(mode="after")
    def _complete(self) -> Resource:
        if not self.permission:
            object.__setattr__(self, "permission", self._default_permission())
        if not self.name:
            ident = "-".join(str(getattr(self, f)) for f in self.IDENTITY)
            object.__setattr__(self, "name", _slug(f"{self.kind}-{ident}"))
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"resource name {self.name!r} must be 1-64 letters, digits, '-' or '_'"
            )
        if self.env is not None and not _ENV_RE.match(self.env):
            raise ValueError(f"env {self.env!r} is not a valid environment variable name")
        if self.auth != "app" and not self._user_scopes():
            raise ValueError(
                f"a {self.kind} resource cannot be used as the signed-in user (no user API "
                f"scope covers it); use auth 'app'")
        return self

    def _user_scopes(self) -> tuple[str, ...]:
        return self.USER_SCOPES

    @property
    def identity(self) -> str:
        """A human-readable id: ``secret scope/key``, ``serving_endpoint my-llm``."""
        return "/".join(str(getattr(self, f)) for f in self.IDENTITY)

    @property
    def env_value(self) -> str:
        """What the platform puts in a ``valueFrom`` env for this kind (its last id field:
        endpoint name, space id, warehouse id, securable full name, ...)."""
        return str(getattr(self, self.IDENTITY[-1]))

    @property
    def grants_app(self) -> bool:
        """Granted to the app's service principal (an ``AppResource``)?"""
        return self.auth in ("app", "both")

    @property
    def user_scopes(self) -> tuple[str, ...]:
        """The user API scopes this declaration adds to the app (none for auth "app")."""
        return self._user_scopes() if self.auth in ("user", "both") else ()

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(exclude_none=True)
        if out.get("auth") == "app":
            del out["auth"]  # the default; keeps existing MLmodels and manifests byte-stable
        return out

    def field(self, name: str) -> str:
        """A field the validator guaranteed for this kind, as a string."""
        value = getattr(self, name, None)
        if value is None:  # pragma: no cover - prevented by validation
            raise ConfigError(f"a {self.kind} resource needs {name}")
        return str(value)

    def _sdk_spec(self, apps: Any) -> Any:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def to_app_resource(self) -> Any:
        """The databricks-sdk ``AppResource`` for this declaration."""
        from databricks.sdk.service import apps

        return apps.AppResource(name=self.name, description=self.description,
                                **{self.kind: self._sdk_spec(apps)})

    def to_mlflow_resource(self) -> Any | None:
        """MLflow's own resource object where MLflow has one (for Model Serving parity)."""
        return None


class ServingEndpointResource(Resource):
    IDENTITY = ("endpoint_name",)
    DEFAULT_PERMISSION = "CAN_QUERY"
    USER_SCOPES = ("serving.serving-endpoints",)
    kind: Literal["serving_endpoint"]
    endpoint_name: str

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceServingEndpoint(
            name=self.endpoint_name,
            permission=apps.AppResourceServingEndpointServingEndpointPermission(self.permission))

    def to_mlflow_resource(self) -> Any:
        from mlflow.models.resources import DatabricksServingEndpoint

        return DatabricksServingEndpoint(endpoint_name=self.endpoint_name)


class SecretResource(Resource):
    IDENTITY = ("scope", "key")
    DEFAULT_PERMISSION = "READ"
    kind: Literal["secret"]
    scope: str
    key: str

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceSecret(
            scope=self.scope, key=self.key,
            permission=apps.AppResourceSecretSecretPermission(self.permission))


class SqlWarehouseResource(Resource):
    IDENTITY = ("warehouse_id",)
    DEFAULT_PERMISSION = "CAN_USE"
    USER_SCOPES = ("sql",)
    kind: Literal["sql_warehouse"]
    warehouse_id: str

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceSqlWarehouse(
            id=self.warehouse_id,
            permission=apps.AppResourceSqlWarehouseSqlWarehousePermission(self.permission))

    def to_mlflow_resource(self) -> Any:
        from mlflow.models.resources import DatabricksSQLWarehouse

        return DatabricksSQLWarehouse(warehouse_id=self.warehouse_id)


class ExperimentResource(Resource):
    IDENTITY = ("experiment_id",)
    DEFAULT_PERMISSION = "CAN_EDIT"
    kind: Literal["experiment"]
    experiment_id: str

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceExperiment(
            experiment_id=self.experiment_id,
            permission=apps.AppResourceExperimentExperimentPermission(self.permission))


class GenieSpaceResource(Resource):
    IDENTITY = ("space_id",)
    DEFAULT_PERMISSION = "CAN_RUN"
    USER_SCOPES = ("dashboards.genie",)
    kind: Literal["genie_space"]
    space_id: str

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceGenieSpace(
            name=self.name, space_id=self.space_id,
            permission=apps.AppResourceGenieSpaceGenieSpacePermission(self.permission))

    def to_mlflow_resource(self) -> Any:
        from mlflow.models.resources import DatabricksGenieSpace

        return DatabricksGenieSpace(genie_space_id=self.space_id)


# securable type -> (default permission, user API scopes of the user's way in)
_UC_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "CONNECTION": ("USE_CONNECTION", ("catalog.connections",)),
    "FUNCTION": ("EXECUTE", ("sql",)),
    "TABLE": ("SELECT", ("sql",)),
    "VOLUME": ("READ_VOLUME", ("files.files",)),
}


class UcSecurableResource(Resource):
    IDENTITY = ("securable_type", "securable_full_name")
    kind: Literal["uc_securable"]
    securable_type: str
    securable_full_name: str

    @pydantic.field_validator("securable_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        upper = str(value).upper()
        if upper not in _UC_TYPES:
            raise ValueError(f"securable_type must be one of {sorted(_UC_TYPES)}, got {upper!r}")
        return upper

    def _default_permission(self) -> str:
        return _UC_TYPES[self.securable_type][0]

    def _user_scopes(self) -> tuple[str, ...]:
        return _UC_TYPES[self.securable_type][1]

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceUcSecurable(
            securable_full_name=self.securable_full_name,
            securable_type=apps.AppResourceUcSecurableUcSecurableType(self.securable_type),
            permission=apps.AppResourceUcSecurableUcSecurablePermission(self.permission))

    def to_mlflow_resource(self) -> Any | None:
        from mlflow.models import resources as r

        builders = {
            "CONNECTION": lambda: r.DatabricksUCConnection(
                connection_name=self.securable_full_name),
            "FUNCTION": lambda: r.DatabricksFunction(function_name=self.securable_full_name),
            "TABLE": lambda: r.DatabricksTable(table_name=self.securable_full_name),
        }
        build = builders.get(self.securable_type)
        return build() if build else None


class JobResource(Resource):
    IDENTITY = ("job_id",)
    DEFAULT_PERMISSION = "CAN_MANAGE_RUN"
    kind: Literal["job"]
    job_id: str

    @pydantic.field_validator("job_id")
    @classmethod
    def _numeric(cls, value: str) -> str:
        if not str(value).isdigit():
            raise ValueError(f"job_id must be the job's numeric id, got {value!r}")
        return value

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceJob(
            id=self.job_id, permission=apps.AppResourceJobJobPermission(self.permission))


class DatabaseResource(Resource):
    IDENTITY = ("instance_name", "database_name")
    DEFAULT_PERMISSION = "CAN_CONNECT_AND_CREATE"
    kind: Literal["database"]
    instance_name: str
    database_name: str

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceDatabase(
            instance_name=self.instance_name, database_name=self.database_name,
            permission=apps.AppResourceDatabaseDatabasePermission(self.permission))


class OtherAppResource(Resource):
    IDENTITY = ("app_name",)
    DEFAULT_PERMISSION = "CAN_USE"
    kind: Literal["app"]
    app_name: str

    def _sdk_spec(self, apps: Any) -> Any:
        return apps.AppResourceApp(
            name=self.app_name, permission=apps.AppResourceAppAppPermission(self.permission))


AnyResource = Annotated[
    ServingEndpointResource | SecretResource | SqlWarehouseResource | ExperimentResource
    | GenieSpaceResource | UcSecurableResource | JobResource | DatabaseResource
    | OtherAppResource,
    pydantic.Field(discriminator="kind"),
]


@functools.cache
def _adapter() -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(AnyResource)


def _validate(data: Any) -> Resource:
    result: Resource = _adapter().validate_python(data)
    return result


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", text).strip("-")
    return slug[:64] or "resource"


def _message(error: Any) -> str:
    loc = [str(p) for p in error["loc"]]
    if error["type"] == "missing" and len(loc) == 2:
        return f"a {loc[0]} resource needs {loc[1]}"
    if error["type"] == "union_tag_invalid":
        return (f"kind {error['ctx']['tag']!r} is not one of "
                f"{error['ctx']['expected_tags']}")
    if error["type"] == "union_tag_not_found":
        return "a resource needs a 'kind'"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{'.'.join(loc[1:])}: {msg}" if len(loc) > 1 else msg


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
                res = _validate(dict(item))
            else:
                res = _from_mlflow_resource(item)
        except pydantic.ValidationError as exc:
            msgs = "; ".join(_message(e) for e in exc.errors())
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
    ``serving_endpoint:endpoint_name=my-llm,env=LLM,auth=user``)."""
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
        return ServingEndpointResource(kind="serving_endpoint", endpoint_name=obj.name)
    if isinstance(obj, r.DatabricksSQLWarehouse):
        return SqlWarehouseResource(kind="sql_warehouse", warehouse_id=obj.name)
    if isinstance(obj, r.DatabricksGenieSpace):
        return GenieSpaceResource(kind="genie_space", space_id=obj.name)
    uc = {r.DatabricksUCConnection: "CONNECTION", r.DatabricksFunction: "FUNCTION",
          r.DatabricksTable: "TABLE"}
    for cls, securable_type in uc.items():
        if isinstance(obj, cls):
            return UcSecurableResource(kind="uc_securable", securable_type=securable_type,
                                       securable_full_name=obj.name)
    raise ConfigError(
        f"unsupported resource declaration of type {type(obj).__name__}; use a "
        "mlflow_app_agent.Resource or a dict with a 'kind'"
    )
