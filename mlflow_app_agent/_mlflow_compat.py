"""The one module that touches MLflow's private names (``_x`` attributes, ``_private``
functions). Everything else in the package calls these wrappers, so an MLflow release that
renames or re-signs one of them breaks here, and its tests say which.

MLflow is imported lazily inside each function: importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# --- model URIs -------------------------------------------------------------------------------
# ``models:/`` URIs are parsed and resolved by MLflow's own helpers, the ones MLflow uses when
# it downloads such a URI, so a location means to us exactly what it means to MLflow (names
# with quotes, spaces or ``@``; ``latest``; stages; ``models:/<model-id>``).


class ModelsUriParts(NamedTuple):
    """One of ``model_id``; ``name`` + ``version``; ``name`` + ``alias``; ``name`` + ``stage``;
    or ``name`` alone (the latest version)."""

    model_id: str | None
    name: str | None
    version: str | None
    stage: str | None
    alias: str | None


def parse_models_uri(uri: str) -> ModelsUriParts:
    """The parts of a ``models:/`` URI; raises ``MlflowException`` for a malformed one."""
    from mlflow.store.artifact.utils.models import _parse_model_uri

    parsed = _parse_model_uri(uri)
    return ModelsUriParts(parsed.model_id, parsed.name, parsed.version, parsed.stage,
                          parsed.alias)


def resolve_models_uri(client: Any, uri: str) -> tuple[str, ...]:
    """``(model_id,)`` or ``(name, version)`` for a ``models:/`` URI, resolving aliases,
    stages and ``latest`` in the registry, as MLflow does before it downloads the URI."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    return tuple(str(part) for part in get_model_name_and_version(client, uri))
