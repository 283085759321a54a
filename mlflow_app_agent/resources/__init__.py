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

from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from mlflow_app_agent.errors import ConfigError
from mlflow_app_agent.resources.kinds import (
    AnyResource,
    AuthMode,
    DatabaseResource,
    ExperimentResource,
    GenieSpaceResource,
    JobResource,
    OtherAppResource,
    Resource,
    ResourceKind,
    SecretResource,
    ServingEndpointResource,
    SqlWarehouseResource,
    UcSecurableResource,
    _validate,
)

__all__ = [
    "AnyResource", "AuthMode", "DatabaseResource", "ExperimentResource",
    "GenieSpaceResource", "JobResource", "OtherAppResource", "Resource", "ResourceKind",
    "SecretResource", "ServingEndpointResource", "SqlWarehouseResource",
    "UcSecurableResource", "parse_resource_spec", "parse_resources",
]


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
