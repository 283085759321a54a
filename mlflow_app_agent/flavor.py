"""The ``mlflow_app_agent`` MLflow flavor, laid out as MLflow's own flavors are:
``FLAVOR_NAME``, ``save_model``, ``log_model``, ``load_model`` and ``_load_pyfunc`` (the
``python_function`` loader, so ``mlflow.pyfunc.load_model`` works and its
``unwrap_python_model()`` returns the :class:`~mlflow_app_agent.Agent`).

Importing this module does not import MLflow (``deploy`` reads ``FLAVOR_NAME`` without it).

Model directory layout::

    MLmodel               flavors mlflow_app_agent + python_function, signature, task
    data/agent/agent.py   models from code (preferred: source, not a pickle), or
    data/agent/agent.pkl  a cloudpickled Agent / ResponsesAgent
    code/                 code_paths, if any
    git/diff.patch        uncommitted changes at log time, if any
    requirements.txt, python_env.yaml, conda.yaml, input_example.json
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow_app_agent import agent_config as config
from mlflow_app_agent import provenance, signature
from mlflow_app_agent._version import __version__
from mlflow_app_agent.authoring import Agent, as_agent
from mlflow_app_agent.deploy_spec import DeploySpec, scopes_for
from mlflow_app_agent.errors import AgentDefinitionError, ModelLoadError, UnknownArgumentError
from mlflow_app_agent.model.python_file import load_python_file

if TYPE_CHECKING:
    from mlflow.models import Model
    from mlflow.models.model import ModelInfo

FLAVOR_NAME = "mlflow_app_agent"
FLAVOR_VERSION = 1
# where the agent lives in a model directory of this flavor
AGENT_DIR = "agent"
CODE_FILE = "agent.py"
PICKLE_FILE = "agent.pkl"
SERVER_ENTRYPOINT = ["python", "-m", "mlflow_app_agent.serve"]


def save_model(
    agent: Any,
    path: str | os.PathLike[str],
    *,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    resources: Sequence[Any] | None = None,
    git: provenance.GitMode = "auto",
    input_example: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    metadata: dict[str, Any] | None = None,
    model_config: Any = None,
    mlflow_model: Model | None = None,
    full_mlflow: bool = False,
    user_api_scopes: Sequence[str] | None = None,
    compute_size: str | None = None,
    instances: Any = None,
    **unknown: Any,
) -> None:
    """Save ``agent`` (an Agent, a ResponsesAgent, or a path to a models-from-code file) as
    an MLflow model directory at ``path``. Validates the agent's real output first.
    ``full_mlflow``: as for :func:`log_model`.

    Any other keyword argument is refused (:class:`UnknownArgumentError`), not dropped."""
    if unknown:
        import inspect

        accepted = [n for n in inspect.signature(save_model).parameters if n != "unknown"]
        raise UnknownArgumentError(
            f"save_model() got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(accepted)}"
        )
    prepared = prepare(
        agent,
        code_paths=code_paths,
        resources=resources,
        git=git,
        input_example=input_example,
        model_config=model_config,
        user_api_scopes=user_api_scopes,
        compute_size=compute_size,
        instances=instances,
    )
    prepared.full_mlflow = full_mlflow
    _write(
        prepared,
        Path(path),
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        mlflow_model=mlflow_model,
    )


class Prepared:
    """Everything checked before a single byte is written or a registry call is made."""

    def __init__(self, **fields: Any) -> None:
        self.agent: Agent = fields["agent"]
        self.code_file: Path | None = fields["code_file"]
        self.pickled: bytes | None = fields["pickled"]
        self.code_paths: list[str] = fields["code_paths"]
        self.resources: list[Any] = fields["resources"]
        self.git: provenance.GitInfo | None = fields["git"]
        self.check: signature.ContractCheck = fields["check"]
        self.model_config: dict[str, Any] | None = fields["model_config"]
        self.full_mlflow: bool = bool(fields.get("full_mlflow", False))
        self.deploy: DeploySpec = fields.get("deploy") or DeploySpec()
        # top-level modules the agent imports directly (code file + code_paths, or pickle)
        self.imports: set[str] = fields["imports"]


def prepare(
    agent: Any,
    *,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    resources: Sequence[Any] | None = None,
    git: provenance.GitMode = "auto",
    input_example: Any = None,
    model_config: Any = None,
    user_api_scopes: Sequence[str] | None = None,
    compute_size: str | None = None,
    instances: Any = None,
) -> Prepared:
    """Resolve, check and describe ``agent`` without writing anything.

    ``user_api_scopes`` (beyond those the ``auth: user`` resources need), ``compute_size``
    and ``instances`` (``N`` or ``"MIN:MAX"``) are what ``deploy`` sets on the app."""
    from mlflow_app_agent import dependencies  # packaging: not on the serving path
    from mlflow_app_agent.resources import parse_resources  # pydantic models: not either

    config_dict = config.load_model_config(model_config)
    code_list = [str(Path(p)) for p in (code_paths or [])]
    for p in code_list:
        if not Path(p).exists():
            raise AgentDefinitionError(f"code path {p!r} does not exist")
    declared = parse_resources(resources)
    deploy = DeploySpec.build(compute_size=compute_size, instances=instances)
    deploy = deploy.model_copy(update={"user_api_scopes": tuple(
        scopes_for(declared, user_api_scopes))})
    code_file: Path | None = None
    pickled: bytes | None = None
    if isinstance(agent, (str, os.PathLike)):
        code_file = Path(agent).resolve()
        if not code_file.is_file() or code_file.suffix != ".py":
            raise AgentDefinitionError(f"agent file {str(agent)!r} is not an existing .py file")
        source = code_file.read_text()
        imports = dependencies.imported_modules_of_source(source)
        dependencies.check_local_modules(imports, [*code_list, str(code_file)])
        # code_paths are copied into code/, which is put on sys.path at load time: their
        # parent directories play that part now.
        parents = list(dict.fromkeys(str(Path(p).resolve().parent) for p in code_list))
        loaded = load_python_file(Path(agent), model_config=config_dict,
                                  extra_sys_path=parents)
    else:
        import cloudpickle

        loaded = as_agent(agent)
        target = loaded.source if loaded.source is not None else loaded
        try:
            pickled = cloudpickle.dumps(target)
        except Exception as exc:
            raise AgentDefinitionError(
                f"the agent cannot be pickled ({type(exc).__name__}: {exc}); log it from "
                "a file instead (models from code)"
            ) from exc
        imports = dependencies.imported_modules_of_pickle(pickled)
        dependencies.check_local_modules(imports, code_list)
    schema = config.config_schema_of(loaded)
    if schema is not None:
        config.validate_config(config_dict or {}, schema)
    with config.activate_config(config_dict):
        check = signature.check_agent_output(loaded, input_example)
    logged = [str(code_file)] if code_file else []
    git_info = provenance.collect([*logged, *code_list], git)
    return Prepared(
        agent=loaded,
        code_file=code_file,
        pickled=pickled,
        code_paths=code_list,
        resources=declared,
        git=git_info,
        check=check,
        model_config=config_dict,
        deploy=deploy,
        imports=imports | dependencies.imported_modules_of_code_paths(code_list),
    )


def _flavor_conf(prepared: Prepared) -> dict[str, Any]:
    import mlflow

    agent = prepared.agent
    return {
        "flavor_version": FLAVOR_VERSION,
        "toolkit_version": __version__,
        "mlflow_version": mlflow.__version__,
        "agent_name": agent.name,
        "loader": "code" if prepared.code_file else "pickle",
        "agent_path": f"data/{AGENT_DIR}/{CODE_FILE if prepared.code_file else PICKLE_FILE}",
        "interfaces": list(agent.interfaces),
        "native_interfaces": list(agent.native_interfaces),
        "server_entrypoint": SERVER_ENTRYPOINT,
        "resources": [r.to_dict() for r in prepared.resources],
        "git": prepared.git.summary() if prepared.git else None,
        # materialize installs mlflow-skinny in place of a logged mlflow==X unless True
        "full_mlflow": prepared.full_mlflow,
        **({"deploy": prepared.deploy.to_dict()} if prepared.deploy.to_dict() else {}),
    }


def _write(
    prepared: Prepared,
    path: Path,
    *,
    pip_requirements: Sequence[str] | str | None,
    extra_pip_requirements: Sequence[str] | str | None,
    metadata: dict[str, Any] | None,
    mlflow_model: Model | None,
) -> None:
    import mlflow
    from mlflow.models import Model

    if path.exists() and any(path.iterdir()):
        raise ModelLoadError(f"model path {str(path)!r} already exists and is not empty")
    mlflow_model = mlflow_model or Model()
    mlflow_resources = [r.to_mlflow_resource() for r in prepared.resources]
    declared = [r for r in mlflow_resources if r is not None]
    # Everything that goes into MLmodel is set before pyfunc.save_model writes it, so the
    # file is written by MLflow alone (and requirement inference, which loads the model from
    # it, already finds this flavor's entry). pyfunc.save_model(metadata=...) would replace
    # the task entry: set it on the model instead.
    mlflow_model.metadata = {**(mlflow_model.metadata or {}), **(metadata or {}),
                             "task": signature.TASK}
    mlflow_model.add_flavor(FLAVOR_NAME, **_flavor_conf(prepared))
    from mlflow_app_agent import dependencies  # packaging: not on the serving path
    pip_requirements, extra_pip_requirements = dependencies.requirements_args(
        prepared.imports, pip_requirements, extra_pip_requirements
    )
    with tempfile.TemporaryDirectory(prefix="mlflow-app-agent-") as tmp:
        data = Path(tmp, AGENT_DIR)
        data.mkdir()
        if prepared.code_file is not None:
            shutil.copyfile(prepared.code_file, data / CODE_FILE)
        else:
            (data / PICKLE_FILE).write_bytes(prepared.pickled or b"")
        mlflow.pyfunc.save_model(
            path=str(path),
            loader_module=__name__,
            data_path=str(data),
            code_paths=prepared.code_paths or None,
            mlflow_model=mlflow_model,
            signature=signature.responses_signature(),
            input_example=prepared.check.input_example,
            pip_requirements=pip_requirements,  # None: MLflow infers them
            extra_pip_requirements=extra_pip_requirements,
            model_config=prepared.model_config,
            streamable=True,
            resources=declared if declared and mlflow_model.resources is None else None,
        )
    if prepared.git is not None and prepared.git.diff:
        diff_path = path / provenance.DIFF_ARTIFACT
        diff_path.parent.mkdir(parents=True, exist_ok=True)
        diff_path.write_text(prepared.git.diff)


def log_model(
    agent: Any,
    name: str = "agent",
    *,
    registered_model_name: str | None = None,
    code_paths: Sequence[str | os.PathLike[str]] | None = None,
    resources: Sequence[Any] | None = None,
    git: provenance.GitMode = "auto",
    input_example: Any = None,
    pip_requirements: Sequence[str] | str | None = None,
    extra_pip_requirements: Sequence[str] | str | None = None,
    metadata: dict[str, Any] | None = None,
    model_config: Any = None,
    tags: dict[str, Any] | None = None,
    await_registration_for: int = 300,
    full_mlflow: bool = False,
    user_api_scopes: Sequence[str] | None = None,
    compute_size: str | None = None,
    instances: Any = None,
) -> ModelInfo:
    """Log ``agent`` as an MLflow LoggedModel (optionally registering it) and return the
    ``ModelInfo``. Every check runs before anything reaches the tracking store.

    ``full_mlflow=True``: the materialized app installs the full ``mlflow`` the model
    recorded (say, the agent uses the tracking server's stores); by default it installs
    ``mlflow-skinny`` at the same version, which is all serving needs."""
    import mlflow
    from mlflow.models import Model

    prepared = prepare(
        agent,
        code_paths=code_paths,
        resources=resources,
        git=git,
        input_example=input_example,
        model_config=model_config,
        user_api_scopes=user_api_scopes,
        compute_size=compute_size,
        instances=instances,
    )
    prepared.full_mlflow = full_mlflow
    # resolved now (idempotent in _write): a bad requirements file fails before logging
    from mlflow_app_agent import dependencies  # packaging: not on the serving path
    pip_requirements, extra_pip_requirements = dependencies.requirements_args(
        prepared.imports, pip_requirements, extra_pip_requirements
    )
    all_tags = {**(tags or {}), **(prepared.git.tags() if prepared.git else {})}
    all_tags["mlflow_app_agent.agent_name"] = prepared.agent.name
    all_tags["mlflow_app_agent.version"] = __version__
    info: ModelInfo = Model.log(
        artifact_path=None,
        name=name,
        flavor=_LogAdapter(prepared),
        registered_model_name=registered_model_name,
        await_registration_for=await_registration_for,
        tags=all_tags,
        flavor_name=FLAVOR_NAME,
        validate_serving_input=False,
        pip_requirements=pip_requirements,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
    )
    if prepared.git is not None:
        # MLflow's own context providers may have set repo tags from sys.argv[0]'s repo;
        # ours describe the logged code, and win.
        mlflow.MlflowClient().set_logged_model_tags(info.model_id, prepared.git.tags())
    return info


class _LogAdapter:
    """The ``flavor`` object ``Model.log`` calls: saves the already-prepared agent."""

    __name__ = __name__

    def __init__(self, prepared: Prepared) -> None:
        self._prepared = prepared

    def save_model(self, path: str, mlflow_model: Model, **kwargs: Any) -> None:
        _write(
            self._prepared,
            Path(path),
            pip_requirements=kwargs.get("pip_requirements"),
            extra_pip_requirements=kwargs.get("extra_pip_requirements"),
            metadata=kwargs.get("metadata"),
            mlflow_model=mlflow_model,
        )


def load_model(model_uri: str, dst_path: str | None = None) -> Agent:
    """Load the agent of ``model_uri`` (our flavor, or a pyfunc ResponsesAgent); any
    location :class:`~mlflow_app_agent.model.location.Location` accepts."""
    from mlflow_app_agent.model.load import load_agent  # model/ reads this module's names

    return load_agent(model_uri, dst_path=dst_path).agent


def _load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> Any:
    """MLflow's python_function loader (``loader_module`` is this module): ``data_path`` is
    ``<model>/data/agent``; see :mod:`mlflow_app_agent.model.pyfunc`."""
    from mlflow_app_agent.model.pyfunc import load_pyfunc

    return load_pyfunc(data_path, model_config)
