"""What a materialized app depends on, before resolution (``resolve.py`` pins it).

The roots are: the model's own requirements exactly as the user declared them or MLflow
inferred them — except that ``mlflow`` becomes ``mlflow-skinny`` at the same version
unless the agent needs full MLflow — then this toolkit (its bundled wheel, which declares
only the lean server runtime), then the OTLP trace exporter MLflow needs when the
platform sets an OpenTelemetry endpoint, and the metrics/logs exporters (http and grpc).

Full MLflow is kept when the model was logged with ``log_model(..., full_mlflow=True)``
(recorded in the flavor's MLmodel entry) or ``materialize --full-mlflow`` asks for it;
serving itself never needs it (the bundled server imports only what mlflow-skinny has).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_app_agent.apps.build.wheel import DIST_NAME
from mlflow_app_agent.errors import MaterializeError

# MLflow exports traces over OTLP when the platform sets an OTel endpoint, and the server
# exports metrics and logs (Databricks Apps telemetry speaks grpc; http/protobuf elsewhere);
# both exporters are optional packages of the toolkit, so the app lists them itself.
OTLP_EXPORTER = "opentelemetry-exporter-otlp-proto-http"
OTLP_EXPORTERS = (OTLP_EXPORTER, "opentelemetry-exporter-otlp-proto-grpc")
SKINNY = "mlflow-skinny"
FULL = "mlflow"
_SELF = canonicalize_name(DIST_NAME)


@dataclass
class ModelRequirements:
    """The model's requirements, split by what uv mode can express."""

    requirements: list[str] = field(default_factory=list)  # PEP 508 lines
    options: list[str] = field(default_factory=list)  # -c/-r/--index-url ... (pip mode only)
    local_paths: list[str] = field(default_factory=list)  # ./model/... wheels or dirs
    mlflow: dict[str, Any] = field(default_factory=dict)  # the manifest's record


def _option_line(line: str, model_dir: Path, model_prefix: str) -> str:
    if line.startswith(("-c", "-r", "--constraint", "--requirement")):
        option, _, ref = line.partition(" ")
        ref = ref.strip()
        if not ref or not (model_dir / ref).is_file():
            raise MaterializeError(
                f"model requirements.txt refers to {ref!r}, which is not in the model"
            )
        return f"{option} {model_prefix}/{ref}"
    if "@" in line:
        raise MaterializeError(
            "model requirements.txt has an index option with credentials in its URL; "
            "remove it (credentials must not be shipped in an app directory)"
        )
    return line


def _skinny(req: Requirement) -> Requirement:
    swapped = Requirement(str(req))
    swapped.name = SKINNY
    return swapped


def read_model_requirements(model_dir: Path, *, model_prefix: str = "model",
                            full_mlflow: bool | None = None,
                            logged_full_mlflow: bool = False) -> ModelRequirements:
    """Read ``model_dir/requirements.txt``. ``full_mlflow`` (materialize's flag) overrides
    what the model recorded at log time (``logged_full_mlflow``)."""
    full = logged_full_mlflow if full_mlflow is None else full_mlflow
    out = ModelRequirements()
    out.mlflow = {
        "distribution": FULL if full else SKINNY,
        "decided_by": ("materialize --full-mlflow" if full_mlflow else
                       "materialize --no-full-mlflow" if full_mlflow is False else
                       "log_model(full_mlflow=True)" if logged_full_mlflow else
                       "default: serving needs only mlflow-skinny"),
    }
    req_file = model_dir / "requirements.txt"
    if not req_file.is_file():
        return out
    for raw in req_file.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            out.options.append(_option_line(line, model_dir, model_prefix))
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            local = model_dir / line
            if local.exists() and not Path(line).is_absolute():
                out.local_paths.append(f"./{model_prefix}/{line}")
                continue
            raise MaterializeError(
                f"model requirements.txt line {line!r} is neither a requirement nor a file "
                "inside the model; it cannot be installed on a fresh machine"
            ) from None
        if req.url and req.url.startswith("file:"):
            raise MaterializeError(
                f"model requirement {req.name!r} points to a local file ({req.url}); it "
                "cannot be installed on a fresh machine"
            )
        name = canonicalize_name(req.name)
        if name == _SELF:
            continue  # this toolkit is shipped as a wheel instead
        if name == FULL and not full:
            out.mlflow["logged"] = str(req)
            req = _skinny(req)
            out.mlflow["installed"] = str(req)
        out.requirements.append(str(req))
    return out


def pip_roots(model: ModelRequirements, wheel_relpath: str) -> list[str]:
    """The lines ``uv pip compile`` resolves for pip mode."""
    return [*model.options, *model.requirements, *model.local_paths, wheel_relpath,
            *OTLP_EXPORTERS]


def uv_roots(model: ModelRequirements, wheel_relpath: str) -> tuple[list[str], dict[str, str]]:
    """``(dependencies, [tool.uv.sources])`` of the uv-mode ``pyproject.toml``."""
    if model.options or model.local_paths:
        what = (model.options + model.local_paths)[0]
        raise MaterializeError(
            f"model requirements.txt has {what!r}, which a uv project cannot express; "
            "materialize with --installer pip"
        )
    deps = [*model.requirements, DIST_NAME, *OTLP_EXPORTERS]
    return deps, {DIST_NAME: wheel_relpath.removeprefix("./")}


def header(target: str, exclude_newer: str) -> str:
    return (
        "# Generated by mlflow-app-agent materialize; Databricks Apps pip-installs it.\n"
        f"# Resolved with uv for {target}, index as of {exclude_newer}: the model's own\n"
        "# requirements, the bundled server's runtime and the toolkit wheel (./wheels/).\n"
    )
