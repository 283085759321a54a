"""Where a model is: the one parser of every location the toolkit accepts.

================================  ============================================================
``models:/NAME/VERSION``          a registered model version (also ``/latest``, ``/STAGE``)
``models:/NAME@ALIAS``            the version an alias points at
``models:/m-ID``                  a logged model, by id
``runs:/RUN_ID/PATH``             a model logged in a run
``SCHEME://...``                  any other artifact URI MLflow can download (``s3://``, ...)
a model directory                 a directory holding ``MLmodel``
a materialized app directory      ``MANIFEST.json`` + ``model/MLmodel`` (needs no registry)
``FILE.py[:VARIABLE]``            a Python file defining an agent (served and validated as is)
================================  ============================================================

Anything else is one :class:`~mlflow_app_agent.errors.ModelLocationError` that lists these
forms. Classifying a location never imports MLflow (``serve`` checks it before binding);
the parts of a ``models:/`` or ``runs:/`` URI are parsed by MLflow's own helpers on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mlflow_app_agent.errors import ModelLocationError
from mlflow_app_agent.model.app_dir import MANIFEST_FILE, MODEL_DIR, is_app_dir

if TYPE_CHECKING:
    from mlflow_app_agent._mlflow_compat import ModelsUriParts

Kind = Literal["models", "runs", "uri", "model_dir", "app_dir", "python_file"]

#: every accepted form, in the words ``--help`` and errors use
ACCEPTED_FORMS = (
    "models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-ID (a logged model), "
    "runs:/RUN_ID/PATH, a model directory (MLmodel), a materialized app directory "
    f"({MANIFEST_FILE} + {MODEL_DIR}/MLmodel), or FILE.py[:VARIABLE]"
)

# a URI scheme of two or more characters (so ``C:/...`` stays a path) followed by ``:/``
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
_PYTHON_FILE = re.compile(r"^(?P<path>.+\.py)(?::(?P<attr>[A-Za-z_][A-Za-z0-9_]*))?$")


@dataclasses.dataclass(frozen=True)
class Location:
    """A parsed model location; build one with :meth:`parse`.

    ``text`` is the location as given. Local kinds (``model_dir``, ``app_dir``,
    ``python_file``) carry ``path`` (and ``attr``, the variable of ``FILE.py:VARIABLE``);
    URI kinds (``models``, ``runs``, ``uri``) carry ``uri``.
    """

    text: str
    kind: Kind
    path: Path | None = None
    uri: str | None = None
    attr: str | None = None

    @classmethod
    def parse(cls, location: str | os.PathLike[str] | Location) -> Location:
        """Classify ``location``; raises :class:`ModelLocationError` naming the accepted forms
        for anything else (a missing path, a directory that holds no model, a bare word)."""
        if isinstance(location, Location):
            return location
        text = os.fspath(location)
        if not isinstance(text, str) or not text.strip():
            raise ModelLocationError(f"no model location given; accepted: {ACCEPTED_FORMS}")
        if text.startswith("models:/"):
            return cls(text, "models", uri=text)
        if text.startswith("runs:/"):
            return cls(text, "runs", uri=text)
        if text.startswith("file://"):
            return cls._local(text, Path(text[len("file://"):]))
        if _URI.match(text):
            return cls(text, "uri", uri=text)
        return cls._local(text, Path(text))

    @classmethod
    def _local(cls, text: str, path: Path) -> Location:
        match = _PYTHON_FILE.match(str(path))
        if match and not path.is_dir():
            file = Path(match.group("path"))
            if not file.is_file():
                raise ModelLocationError(f"agent file {str(file)!r} does not exist")
            return cls(text, "python_file", path=file, attr=match.group("attr"))
        if is_app_dir(path):
            return cls(text, "app_dir", path=path)
        if (path / "MLmodel").is_file():
            return cls(text, "model_dir", path=path)
        if path.is_dir():
            raise ModelLocationError(
                f"{path} is neither a model directory (MLmodel) nor a materialized app "
                f"directory ({MANIFEST_FILE} + {MODEL_DIR}/MLmodel)"
            )
        if path.exists():
            raise ModelLocationError(
                f"{str(path)!r} is a file, not a model; accepted: {ACCEPTED_FORMS}")
        raise ModelLocationError(
            f"{text!r} is not a model URI and does not exist as a local path; accepted: "
            f"{ACCEPTED_FORMS}"
        )

    # --- what kind of place ------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        """A directory or file on this machine (no tracking server needed)."""
        return self.path is not None

    @property
    def is_model(self) -> bool:
        """An MLflow model (not a Python file): something ``materialize`` can take."""
        return self.kind != "python_file"

    @property
    def model_dir(self) -> Path | None:
        """The local directory holding ``MLmodel`` (an app dir's ``model/``), else None."""
        if self.kind == "app_dir":
            assert self.path is not None
            return self.path / MODEL_DIR
        return self.path if self.kind == "model_dir" else None

    # --- the parts of a URI, parsed by MLflow ------------------------------------------------

    @functools.cached_property
    def models_parts(self) -> ModelsUriParts | None:
        """The parts of a ``models:/`` URI (None for other kinds), parsed by MLflow."""
        if self.kind != "models":
            return None
        from mlflow.exceptions import MlflowException

        from mlflow_app_agent._mlflow_compat import parse_models_uri

        try:
            parts = parse_models_uri(self.text)
        except MlflowException:
            parts = None
        if parts is None or parts.name == "":  # MLflow reads ``models:/@x`` as name ""
            raise ModelLocationError(
                f"{self.text!r} is not a valid models:/ URI; accepted: {ACCEPTED_FORMS}")
        return parts

    @property
    def registered_name(self) -> str | None:
        parts = self.models_parts
        return parts.name if parts is not None else None

    @property
    def logged_model_id(self) -> str | None:
        """The id of ``models:/<id>`` (MLflow reads a one-part ``models:/`` URI as an id)."""
        parts = self.models_parts
        return parts.model_id if parts is not None else None

    @functools.cached_property
    def run_parts(self) -> tuple[str, str | None] | None:
        """``(run_id, artifact_path)`` of a ``runs:/`` URI (None for other kinds)."""
        if self.kind != "runs":
            return None
        from mlflow.exceptions import MlflowException
        from mlflow.store.artifact.runs_artifact_repo import RunsArtifactRepository

        try:
            run_id, artifact_path = RunsArtifactRepository.parse_runs_uri(self.text)
        except MlflowException:
            raise ModelLocationError(
                f"{self.text!r} is not a valid runs:/ URI (runs:/RUN_ID/PATH)") from None
        return str(run_id), artifact_path

    @property
    def run_id(self) -> str | None:
        parts = self.run_parts
        return parts[0] if parts is not None else None

    def __str__(self) -> str:
        return self.text


__all__ = ["ACCEPTED_FORMS", "Kind", "Location"]
