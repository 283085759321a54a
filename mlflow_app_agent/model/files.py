"""Reading an agent back from a model directory of the ``mlflow_app_agent`` flavor, and
running a models-from-code file. Used at log time (to check the agent), by
``_load_pyfunc`` and by :mod:`mlflow_app_agent.model.load`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow_app_agent import agent_config as config
from mlflow_app_agent.authoring import Agent, as_agent
from mlflow_app_agent.errors import AgentDefinitionError, ModelLoadError

FLAVOR_NAME = "mlflow_app_agent"
AGENT_DIR = "agent"
CODE_FILE = "agent.py"
PICKLE_FILE = "agent.pkl"


def load_code_agent(
    code_file: Path, model_config: dict[str, Any] | None = None, *, extra_sys_path: Any = ()
) -> Agent:
    """Execute a models-from-code file and return the agent it defines.

    The file sets it with ``mlflow.models.set_model(agent)`` (MLflow's convention), or
    defines a module-level ``Agent``/``ResponsesAgent`` (exactly one).
    """
    import importlib.util
    import sys
    import uuid

    import mlflow.models.model as mlflow_model_module

    module_name = f"mlflow_app_agent_code_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(module_name, code_file)
    if spec is None or spec.loader is None:
        raise AgentDefinitionError(f"cannot import {code_file}")
    module = importlib.util.module_from_spec(spec)
    mlflow_model_module.__mlflow_model__ = None
    added = [str(p) for p in extra_sys_path if str(p) not in sys.path]
    sys.path[:0] = added
    sys.modules[module_name] = module
    try:
        with config.activate_config(model_config):
            spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"{code_file.name} imports {exc.name!r}, which is not installed or logged"
        ) from exc
    except Exception as exc:
        raise AgentDefinitionError(
            f"running {code_file.name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
    candidate = mlflow_model_module.__mlflow_model__
    mlflow_model_module.__mlflow_model__ = None
    if candidate is None:
        found = [v for v in vars(module).values() if _is_agent_like(v)]
        if len(found) != 1:
            raise AgentDefinitionError(
                f"{code_file.name} must call mlflow.models.set_model(agent) (found "
                f"{len(found)} module-level agents)"
            )
        candidate = found[0]
    return as_agent(candidate)


def _is_agent_like(value: Any) -> bool:
    if isinstance(value, Agent):
        return True
    from mlflow_app_agent.authoring import loaded_responses_agent_class

    cls = loaded_responses_agent_class()
    return cls is not None and isinstance(value, cls)


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    """``model_dir/MLmodel`` as a dict (not mlflow's ``Model.load``, which imports pandas)."""
    import yaml

    path = model_dir / "MLmodel"
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def agent_from_model_dir(model_dir: Path, model_config: dict[str, Any] | None = None) -> Agent:
    """Load the agent stored in our flavor at ``model_dir`` (the dir holding MLmodel)."""
    import cloudpickle
    from mlflow.utils.model_utils import _add_code_from_conf_to_system_path

    flavors = read_mlmodel(model_dir).get("flavors") or {}
    conf = flavors.get(FLAVOR_NAME) or _conf_from_layout(model_dir)
    pyfunc_conf = flavors.get("python_function") or {}
    _add_code_from_conf_to_system_path(str(model_dir), pyfunc_conf, code_key="code")
    if model_config is None:
        # mlflow.pyfunc.save_model(model_config=...) stores it under "config".
        model_config = pyfunc_conf.get("config")
    agent_path = model_dir / conf["agent_path"]
    if conf.get("loader") == "code":
        agent = load_code_agent(agent_path, model_config)
    else:
        with config.activate_config(model_config), agent_path.open("rb") as fh:
            agent = as_agent(cloudpickle.load(fh))
    # The loaded agent owns its configuration: get_config() sees it inside its calls.
    agent.bind_model_config(model_config)
    return agent


def _conf_from_layout(model_dir: Path) -> dict[str, Any]:
    """While saving, MLflow infers requirements by loading the model before our flavor entry
    is written to MLmodel: find the agent file by the layout instead."""
    for loader, file in (("code", CODE_FILE), ("pickle", PICKLE_FILE)):
        if (model_dir / "data" / AGENT_DIR / file).is_file():
            return {"loader": loader, "agent_path": f"data/{AGENT_DIR}/{file}"}
    raise ModelLoadError(f"{model_dir} has no {FLAVOR_NAME!r} flavor")
