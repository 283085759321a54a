"""``Location.parse``: every accepted form, and one error naming them for anything else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_app_agent.errors import ModelLoadError, ModelLocationError
from mlflow_app_agent.model.location import ACCEPTED_FORMS, Location

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"


def _model_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    return root


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("models:/echo/3", (None, "echo", "3", None, None)),
        ("models:/echo@champion", (None, "echo", None, None, "champion")),
        ("models:/echo/latest", (None, "echo", None, None, None)),
        ("models:/echo/Production", (None, "echo", None, "Production", None)),
        ("models:/m-0123abcd", ("m-0123abcd", None, None, None, None)),
        # names MLflow allows: quotes, spaces, '@', unicode (not '/' or ':')
        ("models:/it's \"quoted\"/2", (None, "it's \"quoted\"", "2", None, None)),
        ("models:/my agent@prod", (None, "my agent", None, None, "prod")),
        ("models:/team@agent@prod", (None, "team@agent", None, None, "prod")),
        ("models:/agënt/1", (None, "agënt", "1", None, None)),
    ],
)
def test_models_uris_are_parsed_by_mlflow(text: str, parts: tuple[str | None, ...]) -> None:
    location = Location.parse(text)
    assert location.kind == "models" and location.uri == text and not location.is_local
    assert tuple(location.models_parts or ()) == parts
    assert location.registered_name == parts[1] and location.logged_model_id == parts[0]
    assert location.run_parts is None and str(location) == text


def test_runs_and_other_artifact_uris() -> None:
    runs = Location.parse("runs:/0123abcd/agent/sub")
    assert runs.kind == "runs" and runs.run_parts == ("0123abcd", "agent/sub")
    assert runs.run_id == "0123abcd" and runs.models_parts is None
    for uri in ("s3://bucket/model", "dbfs:/models/x", "mlflow-artifacts:/1/2/artifacts"):
        other = Location.parse(uri)
        assert other.kind == "uri" and other.uri == uri and other.is_model


@pytest.mark.parametrize("text", ["models:/", "models:/a/b/c", "models:/a/", "models:/@x"])
def test_malformed_models_uris_are_one_error(text: str) -> None:
    location = Location.parse(text)  # classified without MLflow; parsed on first use
    with pytest.raises(ModelLocationError, match="not a valid models:/ URI; accepted: models:/"):
        _ = location.models_parts


def test_malformed_runs_uri() -> None:
    with pytest.raises(ModelLocationError, match=r"not a valid runs:/ URI \(runs:/RUN_ID/PATH"):
        _ = Location.parse("runs:/").run_parts


def test_local_model_and_app_dirs(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "m")
    found = Location.parse(model)
    assert found.kind == "model_dir" and found.path == model and found.model_dir == model
    assert found.is_local and found.is_model and found.uri is None
    assert Location.parse(f"file://{model}").kind == "model_dir"

    app = tmp_path / "app"
    _model_dir(app / "model")
    (app / "MANIFEST.json").write_text(json.dumps({"files": {}}))
    as_app = Location.parse(str(app))
    assert as_app.kind == "app_dir" and as_app.model_dir == app / "model"
    assert Location.parse(as_app) is as_app


def test_python_files_with_and_without_a_variable() -> None:
    plain = Location.parse(ECHO)
    assert plain.kind == "python_file" and plain.path == ECHO and plain.attr is None
    assert not plain.is_model and plain.model_dir is None
    named = Location.parse(f"{ECHO}:agent")
    assert named.kind == "python_file" and named.path == ECHO and named.attr == "agent"


@pytest.mark.parametrize("text", ["echo-agent", "/definitely/not/here", "./no-such-dir"])
def test_anything_else_is_one_error_listing_the_forms(text: str) -> None:
    with pytest.raises(ModelLocationError) as info:
        Location.parse(text)
    message = info.value.message
    assert message.startswith(repr(text)) and "is not a model URI" in message
    assert "does not exist" in message and message.endswith(ACCEPTED_FORMS)
    assert isinstance(info.value, ModelLoadError)  # callers that catch load errors keep working


def test_wrong_local_things_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLocationError, match=r"agent file '.*nope\.py' does not exist"):
        Location.parse(tmp_path / "nope.py")
    with pytest.raises(ModelLocationError, match=r"agent file '.*nope\.py' does not exist"):
        Location.parse(f"{tmp_path / 'nope.py'}:agent")
    with pytest.raises(ModelLocationError, match="neither a model directory"):
        Location.parse(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModelLocationError, match=r"notes\.txt' is a file, not a model"):
        Location.parse(tmp_path / "notes.txt")
    with pytest.raises(ModelLocationError, match="no model location given"):
        Location.parse("  ")


def test_classifying_never_imports_mlflow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from mlflow_app_agent.model.location import Location\n"
        f"for text in ('models:/x/1', 'runs:/r/p', 's3://b/k', {str(ECHO)!r}):\n"
        "    Location.parse(text)\n"
        "assert not any(m == 'mlflow' or m.startswith('mlflow.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('mlflow.'))[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_the_mlflow_helpers_behind_the_compat_wrappers_keep_their_shape() -> None:
    """Fails loudly when an MLflow release renames or re-signs what ``_mlflow_compat``'s
    model-URI section calls."""
    import inspect

    from mlflow.store.artifact.utils import models as mlflow_models

    from mlflow_app_agent._mlflow_compat import ModelsUriParts, parse_models_uri

    parsed = mlflow_models._parse_model_uri("models:/echo@prod")
    assert parsed._fields == ModelsUriParts._fields  # the same five parts, in order
    assert parse_models_uri("models:/echo/3") == ModelsUriParts(None, "echo", "3", None, None)
    params = list(inspect.signature(mlflow_models.get_model_name_and_version).parameters)
    assert params == ["client", "models_uri"]
