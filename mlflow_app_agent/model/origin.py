"""Where a model came from: the one provenance record.

``download_model`` (for ``materialize``) returns it; ``load_agent``'s
:class:`~mlflow_app_agent.model.load.LoadedAgent` is this record plus the agent, and is what the
server serves and ``/agent/info`` reports. A materialized app directory carries it in
``MANIFEST.json`` (:meth:`ModelOrigin.manifest_fields`), so serving one needs no registry.
The git facts are the dict :mod:`mlflow_app_agent.provenance` produced at log time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any


@dataclasses.dataclass(kw_only=True)
class ModelOrigin:
    """Registry name/version, logged model id, run id and git facts of a model.

    ``model_uri`` is the location the model was loaded from (for an app directory, the one it
    was materialized from); ``local_path`` the directory holding its ``MLmodel``; ``flavor``
    ``"mlflow_app_agent"`` or ``"python_function"``. For a Python file served directly
    (no model), ``source_file`` names it and ``git`` is read from its checkout when asked.
    """

    model_uri: str | None = None
    local_path: Path | None = None
    registered_name: str | None = None
    registered_version: str | None = None
    model_id: str | None = None
    run_id: str | None = None
    flavor: str | None = None
    git: dict[str, Any] = dataclasses.field(default_factory=dict)
    source_file: str | None = None

    def manifest_fields(self) -> dict[str, Any]:
        """The record as ``MANIFEST.json`` stores it (``model_uri`` as ``source_uri``)."""
        return {
            "source_uri": self.model_uri,
            "registered_name": self.registered_name,
            "registered_version": self.registered_version,
            "model_id": self.model_id,
            "run_id": self.run_id,
        }

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], **fields: Any) -> ModelOrigin:
        version = manifest.get("registered_version")
        return cls(
            model_uri=manifest.get("source_uri"),
            registered_name=manifest.get("registered_name"),
            registered_version=None if version is None else str(version),
            model_id=manifest.get("model_id"),
            run_id=manifest.get("run_id"),
            **fields,
        )


__all__ = ["ModelOrigin"]
