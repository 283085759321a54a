"""What a deploy sets on a Databricks App besides its resources: the user-authorization
scopes of the forwarded user token, the compute size and the number of instances.

Declared at log time (``log_model(user_api_scopes=..., compute_size=..., instances=...)``),
carried in the MLmodel and ``MANIFEST.json``, and overridable at ``materialize`` and
``deploy`` time. Everything here is checked before any workspace call.

Platform facts (Databricks Apps docs, 2026): user authorization limits the token the Apps
proxy forwards (``X-Forwarded-Access-Token``) to the app's ``user_api_scopes`` plus the
default identity scopes; compute sizes are those of the SDK's ``ComputeSize`` (the docs name
MEDIUM, the default, and LARGE); horizontal scaling (Beta) runs 1-5 instances behind one
URL with best-effort session affinity, set as ``compute_min_instances`` and
``compute_max_instances`` together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pydantic

from mlflow_app_agent.errors import ConfigError

# scope -> what it lets the app do as the signed-in user (scope names as the Apps UI and
# the API take them: ``<api-group>.<resource>``, ``:read`` for read-only)
USER_API_SCOPES: dict[str, str] = {
    "sql": "run SQL on warehouses (tables, UC functions through SQL)",
    "dashboards.genie": "ask Genie spaces",
    "serving.serving-endpoints": "query and read model serving endpoints",
    "files.files": "read and write files in volumes and the workspace",
    "vectorsearch.vector-search-indexes": "query vector search indexes",
    "vectorsearch.vector-search-endpoints": "read vector search endpoints",
    "catalog.catalogs:read": "read Unity Catalog catalogs",
    "catalog.schemas:read": "read Unity Catalog schemas",
    "catalog.tables:read": "read Unity Catalog table metadata",
    "catalog.connections": "use Unity Catalog connections",
    "iam.access-control:read": "read access control (granted by default)",
    "iam.current-user:read": "read the signed-in user's identity (granted by default)",
}
DEFAULT_SCOPES = ("iam.access-control:read", "iam.current-user:read")
MIN_INSTANCES, MAX_INSTANCES = 1, 5
_INSTANCES = re.compile(r"^\s*(\d+)\s*(?::\s*(\d+)\s*)?$")
_APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,28}[a-z0-9]$")


def check_app_name(app_name: str | None) -> str:
    """A name the Apps API takes: 2-30 lowercase letters, digits and '-'."""
    if not _APP_NAME.match(app_name or ""):
        raise ConfigError(f"app name {app_name!r}: use 2-30 lowercase letters, digits and '-'")
    return str(app_name)


def check_scopes(scopes: Iterable[str] | None, *, what: str = "user API scope") -> list[str]:
    """Scope names, de-duplicated and sorted; an unknown one is a ConfigError with the list.
    The default identity scopes are accepted and dropped: every user token carries them and
    the platform does not take them as settable scopes."""
    out: set[str] = set()
    for scope in scopes or []:
        name = str(scope).strip()
        if name not in USER_API_SCOPES:
            known = ", ".join(sorted(USER_API_SCOPES))
            raise ConfigError(f"unknown {what} {name!r}; known scopes: {known}")
        if name not in DEFAULT_SCOPES:
            out.add(name)
    return sorted(out)


def compute_sizes() -> list[str]:
    """The compute sizes the installed databricks-sdk knows (``ComputeSize``)."""
    from databricks.sdk.service.apps import ComputeSize

    return [size.value for size in ComputeSize]


def check_compute_size(size: str | None) -> str | None:
    if size is None or size == "":
        return None
    value = str(size).strip().upper()
    known = compute_sizes()
    if value not in known:
        raise ConfigError(f"compute size {size!r} is not one of {', '.join(known)}")
    return value


def parse_instances(spec: Any) -> tuple[int, int] | None:
    """``N`` (fixed) or ``MIN:MAX``, each 1-5, MIN <= MAX; also an int or a (min, max) pair."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, bool):
        raise ConfigError(f"instances {spec!r}: expected N or MIN:MAX")
    if isinstance(spec, int):
        low, high = spec, spec
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and \
            all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
        low, high = int(spec[0]), int(spec[1])
    else:
        match = _INSTANCES.match(str(spec))
        if not match:
            raise ConfigError(f"instances {spec!r}: expected N or MIN:MAX, e.g. 2 or 2:4")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
    for value in (low, high):
        if not MIN_INSTANCES <= value <= MAX_INSTANCES:
            raise ConfigError(f"instances {spec!r}: each count must be {MIN_INSTANCES}-"
                              f"{MAX_INSTANCES} (Databricks Apps horizontal scaling), got "
                              f"{value}")
    if low > high:
        raise ConfigError(f"instances {spec!r}: MIN ({low}) is larger than MAX ({high})")
    return low, high


class DeploySpec(pydantic.BaseModel):
    """Scopes and compute for an app; ``None`` means "not set here" (keep what the app has)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    user_api_scopes: tuple[str, ...] = ()
    compute_size: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None

    @classmethod
    def build(cls, *, user_api_scopes: Iterable[str] | None = None,
              compute_size: str | None = None, instances: Any = None) -> DeploySpec:
        pair = parse_instances(instances)
        return cls(user_api_scopes=tuple(check_scopes(user_api_scopes)),
                   compute_size=check_compute_size(compute_size),
                   min_instances=pair[0] if pair else None,
                   max_instances=pair[1] if pair else None)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DeploySpec:
        """The form :meth:`to_dict` writes (MLmodel flavor conf, MANIFEST.json)."""
        data = data or {}
        instances = data.get("instances")
        if isinstance(instances, Mapping):
            instances = (instances.get("min"), instances.get("max"))
        return cls.build(user_api_scopes=data.get("user_api_scopes"),
                         compute_size=data.get("compute_size"), instances=instances)

    @property
    def instances(self) -> tuple[int, int] | None:
        if self.min_instances is None or self.max_instances is None:
            return None
        return self.min_instances, self.max_instances

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user_api_scopes:
            out["user_api_scopes"] = list(self.user_api_scopes)
        if self.compute_size:
            out["compute_size"] = self.compute_size
        if self.instances:
            out["instances"] = {"min": self.min_instances, "max": self.max_instances}
        return out

    def merged(self, override: DeploySpec) -> DeploySpec:
        """Scopes: the union; compute: ``override``'s where it sets them."""
        return DeploySpec(
            user_api_scopes=tuple(sorted(set(self.user_api_scopes) |
                                         set(override.user_api_scopes))),
            compute_size=override.compute_size or self.compute_size,
            min_instances=override.min_instances if override.instances else self.min_instances,
            max_instances=override.max_instances if override.instances else self.max_instances,
        )

    def describe(self) -> str:
        parts = [f"compute {self.compute_size or 'MEDIUM (default)'}"]
        if self.instances:
            low, high = self.instances
            parts.append(f"{low} instance{'s' if low > 1 else ''}" if low == high
                         else f"{low}-{high} instances")
        if self.user_api_scopes:
            parts.append("user API scopes " + ", ".join(self.user_api_scopes))
        return ", ".join(parts)


def scopes_for(resources: Iterable[Any], extra: Iterable[str] | None = None) -> list[str]:
    """The scopes the ``auth: user|both`` resources need, plus ``extra`` (checked)."""
    needed: set[str] = set(check_scopes(extra))
    for res in resources:
        needed.update(res.user_scopes)
    return sorted(needed)


__all__ = [
    "DEFAULT_SCOPES", "MAX_INSTANCES", "MIN_INSTANCES", "USER_API_SCOPES", "DeploySpec",
    "check_app_name", "check_compute_size", "check_scopes", "compute_sizes", "parse_instances", "scopes_for",
]

