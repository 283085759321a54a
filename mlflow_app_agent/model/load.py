"""Resolve a model location and load its agent, with the provenance the server and
``materialize`` report: registered name and version, logged model id, run id, git.

Every location :class:`~mlflow_app_agent.model.location.Location` accepts works here; a
materialized app directory needs no registry at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_app_agent.authoring import Agent, as_agent
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.flavor import FLAVOR_NAME
from mlflow_app_agent.model.app_dir import MANIFEST_FILE
from mlflow_app_agent.model.files import PYFUNC_FLAVOR, MLmodel, agent_from_model_dir, read_mlmodel
from mlflow_app_agent.model.location import Location
from mlflow_app_agent.model.origin import ModelOrigin
from mlflow_app_agent.model.python_file import load_python_file

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

    from mlflow_app_agent.resources import Resource


@dataclasses.dataclass(kw_only=True)
class LoadedAgent(ModelOrigin):
    """An agent and where it came from (the :class:`ModelOrigin` fields)."""

    agent: Agent
    resources: list[Resource] = dataclasses.field(default_factory=list)
    model_config: dict[str, Any] | None = None
    mlmodel: MLmodel | None = dataclasses.field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.agent.name


def _client() -> Any:
    import mlflow

    return mlflow.MlflowClient()  # raises for a store MLflow refuses (e.g. a plain dir)


def _registry_facts(location: Location) -> dict[str, Any]:
    """Registered name/version, model id and run id of a registry or logged-model URI."""
    from mlflow.exceptions import MlflowException

    try:
        if location.kind == "runs":
            return {"run_id": location.run_id}
        parts = location.models_parts
        if parts is None:
            return {}
        client = _client()
        if parts.model_id is not None:
            logged = client.get_logged_model(parts.model_id)
            return {"model_id": logged.model_id, "run_id": logged.source_run_id}
        return _version_facts(_model_version(client, location))
    except MlflowException as exc:
        raise ModelLoadError(f"cannot resolve {location.text!r}: {exc.message}") from None


def _model_version(client: Any, location: Location) -> ModelVersion:
    """The version a ``models:/name/...`` URI means, resolved as MLflow resolves it."""
    from mlflow.exceptions import MlflowException

    from mlflow_app_agent._mlflow_compat import resolve_models_uri

    parts = location.models_parts
    assert parts is not None and parts.name is not None
    try:
        name, version = resolve_models_uri(client, location.text)
    except MlflowException:
        if parts.version is None and parts.alias is None and parts.stage is None:
            # models:/name/latest: say so plainly when the model exists but has no versions
            if not client.get_registered_model(parts.name).latest_versions:
                raise ModelLoadError(
                    f"registered model {parts.name!r} has no versions") from None
        raise
    return client.get_model_version(name, version)


def _version_facts(mv: ModelVersion) -> dict[str, Any]:
    return {
        "registered_name": mv.name,
        "registered_version": str(mv.version),
        "model_id": getattr(mv, "model_id", None),
        "run_id": mv.run_id,
    }


def download_model(model_uri: str | Location, dst_dir: str | os.PathLike[str]) -> ModelOrigin:
    """Copy the model at ``model_uri`` into ``dst_dir`` and say where it came from (a local
    model or app directory is copied; an app directory's ``model/``)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    location = Location.parse(model_uri)
    dst = Path(dst_dir)
    if location.is_local:
        return _local_origin(location, copy_to=dst)[0]
    facts = _registry_facts(location)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=location.text,
                                                        dst_path=str(dst)))
    except MlflowException as exc:
        raise ModelLoadError(f"cannot download {location.text!r}: {exc.message}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot download {location.text!r}: {exc}") from None
    if not (path / "MLmodel").is_file():
        raise ModelLoadError(f"{location.text!r} is not an MLflow model (no MLmodel file)")
    meta = read_mlmodel(path)
    origin = ModelOrigin(model_uri=location.text, local_path=path, flavor=meta.flavor, **facts)
    if origin.model_id is None:
        origin.model_id = meta.model_id
    origin.git = _git_facts(meta, origin)
    return origin


def _local_origin(location: Location, copy_to: Path | None = None
                  ) -> tuple[ModelOrigin, MLmodel]:  # fmt: skip
    if not location.is_model:
        raise ModelLoadError(
            f"{location.text!r} is a Python file, not a model; log it first "
            "(mlflow-app-agent log FILE.py)")
    model_dir = location.model_dir
    assert model_dir is not None and location.path is not None
    if copy_to is not None:
        shutil.copytree(model_dir, copy_to, dirs_exist_ok=True)
    meta = read_mlmodel(model_dir)
    local_path = copy_to if copy_to is not None else model_dir
    if location.kind == "app_dir":
        manifest = json.loads((location.path / MANIFEST_FILE).read_text())
        origin = ModelOrigin.from_manifest(manifest, local_path=local_path, flavor=meta.flavor)
        origin.git = _git_facts(meta, origin, manifest)
        return origin, meta
    origin = ModelOrigin(model_uri=str(location.path), local_path=local_path,
                         model_id=meta.model_id, flavor=meta.flavor)
    origin.git = _git_facts(meta, origin)
    return origin, meta


def _git_facts(meta: MLmodel, origin: ModelOrigin, manifest: dict[str, Any] | None = None
               ) -> dict[str, Any]:  # fmt: skip
    """What our flavor recorded at log time; else what a materialized app recorded; else, for
    a plain pyfunc model, MLflow's own tags on the logged model (if the store is reachable)."""
    if meta.git:
        return meta.git
    if manifest and isinstance(manifest.get("git"), dict) and manifest["git"]:
        return dict(manifest["git"])
    if meta.flavor == PYFUNC_FLAVOR and origin.model_id:
        return _git_from_mlflow_tags(origin.model_id)
    return {}


def load_agent(
    model_uri_or_dir: str | os.PathLike[str] | Location,
    *,
    dst_path: str | os.PathLike[str] | None = None,
    model_config: dict[str, Any] | None = None,
) -> LoadedAgent:
    """Load the agent at any accepted location: our flavor, a pyfunc ResponsesAgent, or an
    agent's Python file (``FILE.py[:VARIABLE]``, loaded without MLflow)."""
    location = Location.parse(model_uri_or_dir)
    if location.kind == "python_file":
        assert location.path is not None
        agent = load_python_file(location.path, location.attr, model_config=model_config)
        return LoadedAgent(agent=agent, source_file=str(location.path.resolve()),
                           model_config=model_config)
    if location.is_local:
        origin, meta = _local_origin(location)
    else:
        target = dst_path or tempfile.mkdtemp(prefix="mlflow-app-agent-model-")
        origin = download_model(location, target)
        assert origin.local_path is not None
        meta = read_mlmodel(origin.local_path)
    assert origin.local_path is not None
    effective_config = model_config if model_config is not None else meta.model_config
    conf = meta.agent_conf
    if conf is not None:
        agent = agent_from_model_dir(origin.local_path, effective_config)
        resources = _resources(conf.get("resources"))
    elif meta.flavor == PYFUNC_FLAVOR:
        agent = _load_pyfunc_responses_agent(origin.local_path, effective_config)
        resources = []
    else:
        raise ModelLoadError(
            f"{location.text} has neither the {FLAVOR_NAME} nor a pyfunc flavor")
    fields = {f.name: getattr(origin, f.name) for f in dataclasses.fields(ModelOrigin)}
    return LoadedAgent(**fields, agent=agent, resources=resources,
                       model_config=effective_config, mlmodel=meta)


def _load_pyfunc_responses_agent(path: Path, model_config: dict[str, Any] | None) -> Agent:
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(str(path), model_config=model_config)
    except Exception as exc:
        raise ModelLoadError(f"loading {path} with mlflow.pyfunc failed: {exc}") from exc
    from mlflow_app_agent._mlflow_compat import raw_python_model

    raw = raw_python_model(model)
    if raw is None:
        raise ModelLoadError(
            f"{path} is a pyfunc model but not a ResponsesAgent; only agents can be served"
        )
    return as_agent(raw)


def _git_from_mlflow_tags(model_id: str) -> dict[str, Any]:
    """For plain pyfunc models: what MLflow recorded itself, if the store is reachable."""
    try:
        tags = _client().get_logged_model(model_id).tags
    except Exception:
        return {}
    out: dict[str, Any] = {
        "commit": tags.get("mlflow.source.git.commit"),
        "branch": tags.get("mlflow.source.git.branch"),
        "remote_url": tags.get("mlflow.source.git.repoURL"),
        "dirty": {"true": True, "false": False}.get(tags.get("mlflow.source.git.dirty", "")),
    }
    if out["remote_url"]:
        from mlflow_app_agent.provenance import strip_credentials

        out["remote_url"] = strip_credentials(str(out["remote_url"]))
    return {k: v for k, v in out.items() if v is not None and v != ""}


def _resources(declared: Any) -> list[Resource]:
    """The model's declared resources; their pydantic models (built on import, ~10 ms of a
    server's start) are imported only when it declares some."""
    if not declared:
        return []
    from mlflow_app_agent.resources import parse_resources

    return parse_resources(declared)


__all__ = ["LoadedAgent", "ModelOrigin", "download_model", "load_agent"]
