"""The resource kinds: one pydantic model per kind, joined in a union discriminated by
``kind``. Each kind knows its identity, default permission, user API scopes, its
databricks-sdk ``AppResource`` and MLflow's own resource object where one exists."""

from __future__ import annotations

import functools
import re
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
