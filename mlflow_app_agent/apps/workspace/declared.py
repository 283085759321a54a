"""The resources a model or app directory declares, read from its ``MLmodel`` without loading
(or executing) the agent: ``deploy`` and ``check-auth`` only need the declarations."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from mlflow_app_agent.deploy_spec import DeploySpec
from mlflow_app_agent.flavor import FLAVOR_NAME
from mlflow_app_agent.model.app_dir import MANIFEST_FILE
from mlflow_app_agent.model.files import read_mlmodel
from mlflow_app_agent.model.location import Location
from mlflow_app_agent.resources import Resource, parse_resource_spec, parse_resources

# MLflow's own MLmodel ``resources`` block (pyfunc models) -> our kinds
_MLFLOW_KINDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "serving_endpoint": ("serving_endpoint", "endpoint_name", {}),
    "sql_warehouse": ("sql_warehouse", "warehouse_id", {}),
    "genie_space": ("genie_space", "space_id", {}),
    "uc_connection": ("uc_securable", "securable_full_name", {"securable_type": "CONNECTION"}),
    "function": ("uc_securable", "securable_full_name", {"securable_type": "FUNCTION"}),
    "table": ("uc_securable", "securable_full_name", {"securable_type": "TABLE"}),
}


def resources_from_mlmodel(mlmodel: Mapping[str, Any]) -> list[Resource]:
    """Our flavor's declarations; for a plain pyfunc model, MLflow's ``resources`` block."""
    conf = (mlmodel.get("flavors") or {}).get(FLAVOR_NAME)
    if conf is not None:
        return parse_resources(conf.get("resources") or [])
    block = (mlmodel.get("resources") or {}).get("databricks") or {}
    items: list[dict[str, Any]] = []
    for mlflow_kind, entries in sorted(block.items()):
        if mlflow_kind not in _MLFLOW_KINDS:
            continue  # e.g. vector search indexes: no Databricks Apps resource kind
        kind, field, extra = _MLFLOW_KINDS[mlflow_kind]
        for entry in entries or []:
            items.append({"kind": kind, field: entry["name"], **extra})
    return parse_resources(items)


def declared_resources(model_uri_or_dir: str | os.PathLike[str] | Location) -> list[Resource]:
    """Resources declared by a materialized app dir, a local model dir or a model URI (of
    which only the ``MLmodel`` file is fetched)."""
    return declared(model_uri_or_dir)[0]


def deploy_spec_from_mlmodel(mlmodel: Mapping[str, Any]) -> DeploySpec:
    conf = (mlmodel.get("flavors") or {}).get(FLAVOR_NAME) or {}
    return DeploySpec.from_dict(conf.get("deploy"))


def declared(
    model_uri_or_dir: str | os.PathLike[str] | Location,
) -> tuple[list[Resource], DeploySpec]:
    """Resources and the deploy spec (scopes, compute) of an app dir, model dir or model URI:
    MANIFEST.json first (what materialize wrote, overrides included), else the MLmodel."""
    location = Location.parse(model_uri_or_dir)
    if location.kind == "app_dir":
        assert location.path is not None
        data = json.loads((location.path / MANIFEST_FILE).read_text())
        if isinstance(data.get("resources"), list):
            return (parse_resources(data["resources"]),
                    DeploySpec.from_dict(data.get("deploy")))
    doc = read_mlmodel(location).doc
    return resources_from_mlmodel(doc), deploy_spec_from_mlmodel(doc)


def merge_resources(declared: Iterable[Resource], extra: Iterable[Any] | None) -> list[Resource]:
    """``extra`` (Resource, dict or ``kind:key=value`` spec) replaces same-named declarations."""
    out = {r.name: r for r in declared}
    for item in extra or []:
        res = parse_resource_spec(item) if isinstance(item, str) else parse_resources([item])[0]
        out[res.name] = res
    return list(out.values())
