"""Reading a model directory: the one ``MLmodel`` reader, and the agent stored in a model of
the ``mlflow_app_agent`` flavor (used by ``_load_pyfunc`` and by
:mod:`mlflow_app_agent.model.load`). The directory layout itself is the flavor's
(:mod:`mlflow_app_agent.flavor`)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_app_agent import agent_config
from mlflow_app_agent.authoring import Agent, as_agent
from mlflow_app_agent.errors import ModelLoadError
from mlflow_app_agent.flavor import FLAVOR_NAME

if TYPE_CHECKING:
    from mlflow.models import Model

    from mlflow_app_agent.deploy_spec import DeploySpec
    from mlflow_app_agent.model.location import Location

MLMODEL_FILE = "MLmodel"
PYFUNC_FLAVOR = "python_function"


@dataclasses.dataclass(frozen=True)
class MLmodel:
    """The parsed ``MLmodel`` of a model, as a plain mapping plus what the toolkit asks of it."""

    doc: Mapping[str, Any]
    source: str

    @property
    def flavors(self) -> Mapping[str, Any]:
        flavors = self.doc.get("flavors")
        return flavors if isinstance(flavors, Mapping) else {}

    @property
    def agent_conf(self) -> dict[str, Any] | None:
        """This toolkit's flavor entry, or None for a model of another flavor."""
        conf = self.flavors.get(FLAVOR_NAME)
        return dict(conf) if isinstance(conf, Mapping) else None

    @property
    def pyfunc_conf(self) -> dict[str, Any]:
        conf = self.flavors.get(PYFUNC_FLAVOR)
        return dict(conf) if isinstance(conf, Mapping) else {}

    @property
    def flavor(self) -> str | None:
        """``mlflow_app_agent``, else ``python_function``, else None (not servable)."""
        if self.agent_conf is not None:
            return FLAVOR_NAME
        return PYFUNC_FLAVOR if PYFUNC_FLAVOR in self.flavors else None

    @property
    def model_config(self) -> dict[str, Any] | None:
        """The config ``mlflow.pyfunc.save_model(model_config=...)`` stored."""
        config = self.pyfunc_conf.get("config")
        return dict(config) if isinstance(config, Mapping) else None

    @property
    def model_id(self) -> str | None:
        value = self.doc.get("model_id")
        return str(value) if value else None

    @property
    def git(self) -> dict[str, Any]:
        """The git facts our flavor recorded at log time (empty for other flavors)."""
        return dict((self.agent_conf or {}).get("git") or {})

    def to_mlflow(self) -> Model:
        """MLflow's own ``Model`` object for the same document."""
        from mlflow.models import Model

        return Model.from_dict(dict(self.doc))


def read_mlmodel(where: Path | Location) -> MLmodel:
    """The ``MLmodel`` of a model directory (or the ``model/`` of an app directory, or a
    model URI, of which only the ``MLmodel`` file is fetched)."""
    import yaml

    from mlflow_app_agent.model.location import Location

    location = where if isinstance(where, Location) else None
    directory = where if isinstance(where, Path) else where.model_dir
    if directory is None:
        assert location is not None
        return _fetch_mlmodel(location)
    path = directory / MLMODEL_FILE
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{directory} has no {MLMODEL_FILE} file: not an MLflow model"
                             ) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{path} is not an MLmodel file (not a YAML mapping)")
    return MLmodel(doc, str(path))


def _fetch_mlmodel(location: Location) -> MLmodel:
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    if not location.is_model:
        raise ModelLoadError(f"{location.text!r} is a Python file, not a model")
    try:
        model = Model.load(location.text)  # fetches only the MLmodel file
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(f"cannot read the MLmodel of {location.text!r}: {exc}") from None
    return MLmodel(model.to_dict(), location.text)


def agent_from_model_dir(model_dir: Path, model_config: dict[str, Any] | None = None) -> Agent:
    """Load the agent stored in our flavor at ``model_dir`` (the dir holding MLmodel).

    ``model_config`` None: the config stored at log time. The config stays active after
    loading (the agent reads it per request with ``get_config``)."""
    import cloudpickle

    from mlflow_app_agent._mlflow_compat import add_code_paths_to_sys_path
    from mlflow_app_agent.model.python_file import load_python_file

    meta = read_mlmodel(model_dir)
    conf = meta.agent_conf
    if conf is None or "agent_path" not in conf:
        raise ModelLoadError(f"{model_dir} has no {FLAVOR_NAME!r} flavor")
    add_code_paths_to_sys_path(model_dir, meta.pyfunc_conf)
    if model_config is None:
        model_config = meta.model_config
    agent_path = model_dir / conf["agent_path"]
    if conf.get("loader") == "code":
        agent = load_python_file(agent_path, model_config=model_config)
    else:
        with agent_config.activate_config(model_config), agent_path.open("rb") as fh:
            agent = as_agent(cloudpickle.load(fh))
    # The loaded agent owns its configuration: get_config() sees it inside its calls.
    agent.bind_model_config(model_config)
    return agent


__all__ = ["MLMODEL_FILE", "PYFUNC_FLAVOR", "MLmodel", "agent_from_model_dir", "read_deploy_spec",
           "read_mlmodel"]


def read_deploy_spec(directory: str | os.PathLike[str] | None) -> DeploySpec:
    """The deploy spec a materialized app dir (``MANIFEST.json``) or a model dir (``MLmodel``)
    holds; empty when there is none or it cannot be read (``/agent/info`` must not fail)."""
    import json

    import yaml

    from mlflow_app_agent.deploy_spec import DeploySpec
    from mlflow_app_agent.errors import ConfigError
    from mlflow_app_agent.model.app_dir import MANIFEST_FILE, MODEL_DIR

    if not directory:
        return DeploySpec()
    root = Path(directory)
    if root.name == MODEL_DIR and (root.parent / MANIFEST_FILE).is_file():
        root = root.parent  # the model inside an app dir: the manifest has the overrides
    try:
        if (root / MANIFEST_FILE).is_file():
            return DeploySpec.from_dict(json.loads((root / MANIFEST_FILE).read_text())
                                        .get("deploy"))
        for mlmodel in (root / "MLmodel", root / MODEL_DIR / "MLmodel"):
            if mlmodel.is_file():
                doc = yaml.safe_load(mlmodel.read_text()) or {}
                conf = (doc.get("flavors") or {}).get(FLAVOR_NAME) or {}
                return DeploySpec.from_dict(conf.get("deploy"))
    except (OSError, ValueError, yaml.YAMLError, ConfigError, AttributeError):
        pass
    return DeploySpec()
