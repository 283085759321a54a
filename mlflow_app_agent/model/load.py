"""Resolve a model location and load its agent, with the registry facts the server and
``materialize`` report: registered name and version, logged model id, run id, git.

Locations: ``models:/name/3``, ``models:/name@alias``, ``models:/m-<id>``, ``runs:/<id>/path``,
a local model directory (holding ``MLmodel``), or a materialized app directory (holding
``MANIFEST.json`` and ``model/MLmodel``), which needs no registry at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_app_agent.authoring import Agent, as_agent
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.resources import Resource, parse_resources

if TYPE_CHECKING:
    from mlflow.models import Model

from mlflow_app_agent.model.app_dir import MANIFEST_FILE, is_app_dir
from mlflow_app_agent.model.app_dir import MODEL_DIR as APP_MODEL_DIR

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))?/?$")


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model came from, resolved without loading its code."""

    source_uri: str | None
    local_path: Path
    registered_name: str | None = None
    registered_version: str | None = None
    model_id: str | None = None
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_uri": self.source_uri,
            "registered_name": self.registered_name,
            "registered_version": self.registered_version,
            "model_id": self.model_id,
            "run_id": self.run_id,
        }


@dataclasses.dataclass(frozen=True)
class LoadedAgent:
    agent: Agent
    model_uri: str | None
    local_path: Path
    model_id: str | None
    run_id: str | None
    registered_name: str | None
    registered_version: str | None
    flavor: str
    git: dict[str, Any]
    resources: list[Resource]
    model_config: dict[str, Any] | None
    mlmodel: Model | None = dataclasses.field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.agent.name


def _registry_facts(uri: str) -> dict[str, Any]:
    """Registered name/version, model id and run id for a registry or logged-model URI."""
    import mlflow
    from mlflow.exceptions import MlflowException

    match = _MODELS_URI.match(uri)
    try:
        client = mlflow.MlflowClient()  # raises for a store MLflow refuses (e.g. a plain dir)
        if match and match.group("name").startswith("m-") and not match.group("version") and \
                not match.group("alias"):
            logged = client.get_logged_model(match.group("name"))
            return {"model_id": logged.model_id, "run_id": logged.source_run_id}
        if match and (match.group("version") or match.group("alias")):
            name = match.group("name")
            if match.group("alias"):
                mv = client.get_model_version_by_alias(name, match.group("alias"))
            elif match.group("version") == "latest":
                versions = client.search_model_versions(f"name='{name}'")
                if not versions:
                    raise ModelLoadError(f"registered model {name!r} has no versions")
                mv = max(versions, key=lambda v: int(v.version))
            else:
                mv = client.get_model_version(name, match.group("version"))
            return {
                "registered_name": mv.name,
                "registered_version": str(mv.version),
                "model_id": getattr(mv, "model_id", None),
                "run_id": mv.run_id,
            }
        if uri.startswith("runs:/"):
            return {"run_id": uri[len("runs:/"):].split("/")[0]}
    except MlflowException as exc:
        raise ModelLoadError(f"cannot resolve {uri!r}: {exc.message}") from None
    return {}


def download_model(model_uri: str, dst_dir: str | os.PathLike[str]) -> ModelSource:
    """Copy the artifacts of ``model_uri`` into ``dst_dir`` and say where they came from."""
    import mlflow
    from mlflow.exceptions import MlflowException

    dst = Path(dst_dir)
    local = Path(model_uri)
    if local.is_dir():
        return _local_source(local, copy_to=dst)
    facts = _registry_facts(model_uri)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    except MlflowException as exc:
        raise ModelLoadError(f"cannot download {model_uri!r}: {exc.message}") from None
    except OSError as exc:
        raise ModelLoadError(f"cannot download {model_uri!r}: {exc}") from None
    if not (path / "MLmodel").is_file():
        raise ModelLoadError(f"{model_uri!r} is not an MLflow model (no MLmodel file)")
    if facts.get("model_id") is None:
        facts["model_id"] = _mlmodel_model_id(path)
    return ModelSource(source_uri=model_uri, local_path=path, **facts)


def _mlmodel_model_id(path: Path) -> str | None:
    from mlflow_app_agent.model.files import read_mlmodel

    model_id = read_mlmodel(path).get("model_id")
    return str(model_id) if model_id else None


def _local_source(path: Path, copy_to: Path | None = None) -> ModelSource:
    import shutil

    if is_app_dir(path):
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        model_dir = path / APP_MODEL_DIR
        if copy_to is not None:
            shutil.copytree(model_dir, copy_to, dirs_exist_ok=True)
            model_dir = copy_to
        return ModelSource(
            source_uri=manifest.get("source_uri"),
            local_path=model_dir,
            registered_name=manifest.get("registered_name"),
            registered_version=manifest.get("registered_version"),
            model_id=manifest.get("model_id"),
            run_id=manifest.get("run_id"),
        )
    if not (path / "MLmodel").is_file():
        raise ModelLoadError(
            f"{path} is neither a model directory (MLmodel) nor a materialized app directory "
            f"({MANIFEST_FILE} + {APP_MODEL_DIR}/MLmodel)"
        )
    local_path = path
    if copy_to is not None:
        shutil.copytree(path, copy_to, dirs_exist_ok=True)
        local_path = copy_to
    return ModelSource(
        source_uri=str(path), local_path=local_path, model_id=_mlmodel_model_id(path)
    )


def load_agent(
    model_uri_or_dir: str | os.PathLike[str],
    *,
    dst_path: str | os.PathLike[str] | None = None,
    model_config: dict[str, Any] | None = None,
) -> LoadedAgent:
    """Load the agent at ``model_uri_or_dir`` (our flavor or a pyfunc ResponsesAgent)."""
    from mlflow_app_agent.model import files as model_files

    location = str(model_uri_or_dir)
    if Path(location).is_dir():
        source = _local_source(Path(location))
    else:
        if "://" not in location and not location.startswith(("models:/", "runs:/")):
            raise ModelLoadError(
                f"{location!r} is not a model URI (models:/name/version, models:/name@alias, "
                "runs:/...) or an existing directory"
            )
        target = dst_path or tempfile.mkdtemp(prefix="mlflow-app-agent-model-")
        source = download_model(location, target)
    # the MLmodel as data: mlflow's Model.load imports its signature module, hence pandas,
    # which the lean app runtime does not install
    flavors = model_files.read_mlmodel(source.local_path).get("flavors") or {}
    conf = flavors.get(model_files.FLAVOR_NAME)
    pyfunc_conf = flavors.get("python_function") or {}
    meta: Model | None = None
    effective_config = model_config if model_config is not None else pyfunc_conf.get(
        "config"  # where mlflow.pyfunc.save_model(model_config=...) stores it
    )
    if conf is not None:
        agent = model_files.agent_from_model_dir(source.local_path, effective_config)
        flavor_name = model_files.FLAVOR_NAME
        git = conf.get("git") or {}
        resources = parse_resources(conf.get("resources") or [])
    elif pyfunc_conf:
        from mlflow.models import Model

        meta = Model.load(str(source.local_path / "MLmodel"))
        agent = _load_pyfunc_responses_agent(source.local_path, effective_config)
        flavor_name = "python_function"
        git = _git_from_mlflow_tags(source)
        resources = []
    else:
        raise ModelLoadError(f"{location} has neither the mlflow_app_agent nor a pyfunc flavor")
    return LoadedAgent(
        agent=agent,
        model_uri=source.source_uri,
        local_path=source.local_path,
        model_id=source.model_id,
        run_id=source.run_id,
        registered_name=source.registered_name,
        registered_version=source.registered_version,
        flavor=flavor_name,
        git=dict(git),
        resources=resources,
        model_config=effective_config,
        mlmodel=meta,
    )


def _load_pyfunc_responses_agent(path: Path, model_config: dict[str, Any] | None) -> Agent:
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(str(path), model_config=model_config)
    except Exception as exc:
        raise ModelLoadError(f"loading {path} with mlflow.pyfunc failed: {exc}") from exc
    impl = model._model_impl
    raw = impl.get_raw_model() if hasattr(impl, "get_raw_model") else None
    if raw is None:
        raise ModelLoadError(
            f"{path} is a pyfunc model but not a ResponsesAgent; only agents can be served"
        )
    return as_agent(raw)


def _git_from_mlflow_tags(source: ModelSource) -> dict[str, Any]:
    """For plain pyfunc models: what MLflow recorded itself, if the store is reachable."""
    if not source.model_id:
        return {}
    try:
        import mlflow

        tags = mlflow.MlflowClient().get_logged_model(source.model_id).tags
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
