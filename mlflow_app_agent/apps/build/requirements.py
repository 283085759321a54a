"""The pinned ``requirements.txt`` of a materialized app.

Databricks Apps installs ``requirements.txt`` on top of old preinstalled libraries, so
everything the app runs on is pinned exactly: the model's own requirements (as MLflow
recorded them), then the toolkit's runtime dependencies with their whole dependency
closure at the versions installed here, then this toolkit as a bundled wheel (it is not
on the package index). Where the model pins a package differently, the model wins: it
was logged and tested with that version.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_app_agent.apps.build.wheel import DIST_NAME, DistInfo, read_dist_info
from mlflow_app_agent.errors import MaterializeError

# MLflow exports traces over OTLP when the platform sets an OTel endpoint, and the server
# exports metrics and logs (Databricks Apps telemetry speaks grpc; http/protobuf elsewhere);
# the exporters are optional packages (the toolkit's ``otlp`` extra). Pinned to the
# installed opentelemetry-sdk version (released together).
OTLP_EXPORTER = "opentelemetry-exporter-otlp-proto-http"
OTLP_EXPORTERS = (OTLP_EXPORTER, "opentelemetry-exporter-otlp-proto-grpc")
_SELF = canonicalize_name(DIST_NAME)


def _installed_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _applies(req: Requirement, extras: Iterable[str]) -> bool:
    if req.marker is None:
        return True
    env: dict[str, Any] = dict(default_environment())
    for extra in [*extras, ""]:
        env["extra"] = extra
        if req.marker.evaluate(env):
            return True
    return False


def dependency_closure(roots: Iterable[str]) -> dict[str, str]:
    """``{canonical name: "name==version"}`` for ``roots`` and everything they need, at the
    versions installed in this interpreter. Requirements that are not installed are skipped
    (e.g. platform-specific ones whose markers do not apply here)."""
    pins: dict[str, str] = {}
    queue: list[tuple[Requirement, tuple[str, ...]]] = []
    for line in roots:
        queue.append((Requirement(line), ()))
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while queue:
        req, parent_extras = queue.pop()
        if not _applies(req, parent_extras):
            continue
        name = canonicalize_name(req.name)
        extras = tuple(sorted(req.extras))
        if name == _SELF or (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue
        pins[name] = f"{name}=={dist.version}"
        for child in dist.requires or []:
            queue.append((Requirement(child), extras))
    return pins


def toolkit_pins(info: DistInfo | None = None) -> dict[str, str]:
    """Exact pins of what the bundled server needs to run."""
    info = info or read_dist_info()
    roots = [r for r in info.requires if _applies(Requirement(r), ())]
    pins = dependency_closure(roots)
    otel = _installed_version("opentelemetry-sdk")
    if otel:
        for exporter in OTLP_EXPORTERS:
            pins.setdefault(canonicalize_name(exporter), f"{exporter}=={otel}")
    return pins


def _model_line(line: str, model_dir: Path, model_prefix: str) -> tuple[str | None, str | None]:
    """One line of the model's requirements → (line to keep or None, canonical name)."""
    if line.startswith(("-c", "-r", "--constraint", "--requirement")):
        option, _, ref = line.partition(" ")
        ref = ref.strip()
        if not ref or not (model_dir / ref).is_file():
            raise MaterializeError(
                f"model requirements.txt refers to {ref!r}, which is not in the model"
            )
        return f"{option} {model_prefix}/{ref}", None
    if line.startswith("-"):
        if "@" in line:
            raise MaterializeError(
                "model requirements.txt has an index option with credentials in its URL; "
                "remove it (credentials must not be shipped in an app directory)"
            )
        return line, None
    try:
        req = Requirement(line)
    except InvalidRequirement:
        # a local path to a wheel or directory shipped inside the model
        local = model_dir / line
        if local.exists() and not Path(line).is_absolute():
            return f"./{model_prefix}/{line}", None
        raise MaterializeError(
            f"model requirements.txt line {line!r} is neither a requirement nor a file "
            "inside the model; it cannot be installed on a fresh machine"
        ) from None
    if req.url and req.url.startswith("file:"):
        raise MaterializeError(
            f"model requirement {req.name!r} points to a local file ({req.url}); it cannot "
            "be installed on a fresh machine"
        )
    return line, canonicalize_name(req.name)


def build_requirements(
    model_dir: Path, wheel_relpath: str, *, model_prefix: str = "model",
    pins: dict[str, str] | None = None,
) -> str:
    """The text of ``requirements.txt`` for an app whose model lives in ``model_dir``."""
    pins = dict(toolkit_pins() if pins is None else pins)
    model_lines: list[str] = []
    model_specs: dict[str, Requirement] = {}
    req_file = model_dir / "requirements.txt"
    if req_file.is_file():
        for raw in req_file.read_text().splitlines():
            line = raw.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            kept, name = _model_line(line, model_dir, model_prefix)
            if name == _SELF or kept is None:
                continue  # this toolkit is shipped as a wheel instead
            model_lines.append(kept)
            if name:
                model_specs[name] = Requirement(line)
    overridden = []
    for name, pin in sorted(pins.items()):
        spec = model_specs.get(name)
        if spec is None:
            continue
        exact = any(s.operator in ("==", "===") for s in spec.specifier)
        if not spec.specifier.contains(pin.split("==")[1], prereleases=True):
            overridden.append(name)
        if exact or name in overridden:
            del pins[name]  # one exact pin per package; the model's
    out = ["# Generated by mlflow-app-agent materialize; installed by Databricks Apps.", ""]
    out.append("# The model's own requirements (as logged):")
    out += model_lines or ["# (none)"]
    out += ["", "# The bundled server's runtime, pinned to the versions it was built with:"]
    out += [pins[name] for name in sorted(pins)]
    if overridden:
        out.append(f"# not pinned here because the model pins them: {', '.join(overridden)}")
    out += ["", "# This toolkit (not on the package index), shipped with the app:", wheel_relpath]
    return "\n".join(out) + "\n"
