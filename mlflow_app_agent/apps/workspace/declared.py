"""The resources a model or app directory declares, read from its ``MLmodel`` without loading
(or executing) the agent: ``deploy`` and ``check-auth`` only need the declarations."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow_app_agent.deploy_spec import DeploySpec
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.model.app_dir import MANIFEST_FILE, MODEL_DIR
from mlflow_app_agent.resources import Resource, parse_resource_spec, parse_resources

FLAVOR = "mlflow_app_agent"  # == flavor.FLAVOR_NAME, without importing mlflow for it

# MLflow's own MLmodel ``resources`` block (pyfunc models) -> our kinds
_MLFLOW_KINDS: dict[str, tuple[str, str, dict[str, str]]] = {
    "serving_endpoint": ("serving_endpoint", "endpoint_name", {}),
    "sql_warehouse": ("sql_warehouse", "warehouse_id", {}),
    "genie_space": ("genie_space", "space_id", {}),
    "uc_connection": ("uc_securable", "securable_full_name", {"securable_type": "CONNECTION"}),
    "function": ("uc_securable", "securable_full_name", {"securable_type": "FUNCTION"}),
    "table": ("uc_securable", "securable_full_name", {"securable_type": "TABLE"}),
}


def mlmodel_path(directory: Path) -> Path | None:
    """``MLmodel`` of a model dir, or ``model/MLmodel`` of a materialized app dir."""
    for candidate in (directory / MODEL_DIR / "MLmodel", directory / "MLmodel"):
        if candidate.is_file():
            return candidate
    return None


def resources_from_mlmodel(mlmodel: Mapping[str, Any]) -> list[Resource]:
    """Our flavor's declarations; for a plain pyfunc model, MLflow's ``resources`` block."""
    conf = (mlmodel.get("flavors") or {}).get(FLAVOR)
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


def declared_resources(model_uri_or_dir: str | os.PathLike[str]) -> list[Resource]:
    """Resources declared by a materialized app dir, a local model dir or a model URI."""
    return declared(model_uri_or_dir)[0]


def deploy_spec_from_mlmodel(mlmodel: Mapping[str, Any]) -> DeploySpec:
    conf = (mlmodel.get("flavors") or {}).get(FLAVOR) or {}
    return DeploySpec.from_dict(conf.get("deploy"))


def declared(model_uri_or_dir: str | os.PathLike[str]) -> tuple[list[Resource], DeploySpec]:
    """Resources and the deploy spec (scopes, compute) of an app dir, model dir or model URI:
    MANIFEST.json first (what materialize wrote, overrides included), else the MLmodel."""
    import yaml

    location = str(model_uri_or_dir)
    path = Path(location)
    if path.is_dir():
        manifest = path / MANIFEST_FILE
        if manifest.is_file():
            data = json.loads(manifest.read_text())
            if isinstance(data.get("resources"), list):
                return (parse_resources(data["resources"]),
                        DeploySpec.from_dict(data.get("deploy")))
        found = mlmodel_path(path)
        if found is None:
            raise ModelLoadError(
                f"{path} holds neither MLmodel nor model/MLmodel: not a model or app directory")
        doc = yaml.safe_load(found.read_text()) or {}
        return resources_from_mlmodel(doc), deploy_spec_from_mlmodel(doc)
    if not location.startswith(("models:/", "runs:/")) and "://" not in location:
        raise ModelLoadError(
            f"{location!r} is neither an existing directory nor a model URI "
            "(models:/name/version, models:/name@alias, models:/m-<id>, runs:/...)")
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    try:
        model = Model.load(location)  # fetches only the MLmodel file
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(f"cannot read the MLmodel of {location!r}: {exc}") from None
    doc = model.to_dict()
    return resources_from_mlmodel(doc), deploy_spec_from_mlmodel(doc)


def merge_resources(declared: Iterable[Resource], extra: Iterable[Any] | None) -> list[Resource]:
    """``extra`` (Resource, dict or ``kind:key=value`` spec) replaces same-named declarations."""
    out = {r.name: r for r in declared}
    for item in extra or []:
        res = parse_resource_spec(item) if isinstance(item, str) else parse_resources([item])[0]
        out[res.name] = res
    return list(out.values())
