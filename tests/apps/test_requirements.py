from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_app_agent.apps.build.requirements import (
    OTLP_EXPORTERS,
    pip_roots,
    read_model_requirements,
    uv_roots,
)
from mlflow_app_agent.apps.build.wheel import app_requires, read_dist_info
from mlflow_app_agent.errors import MaterializeError


def model(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "requirements.txt").write_text(text)
    return d


def test_mlflow_becomes_skinny_and_the_rest_stays_as_logged(tmp_path: Path) -> None:
    d = model(tmp_path, "mlflow==3.1.0\ncloudpickle==3.1.1\npydantic>=2\n"
                        "mlflow-app-agent==0.1.0  # not on the index\n")
    got = read_model_requirements(d)
    assert got.requirements == ["mlflow-skinny==3.1.0", "cloudpickle==3.1.1", "pydantic>=2"]
    assert got.mlflow == {"distribution": "mlflow-skinny", "logged": "mlflow==3.1.0",
                          "installed": "mlflow-skinny==3.1.0",
                          "decided_by": "default: serving needs only mlflow-skinny"}
    deps, sources = uv_roots(got, "./wheels/x.whl")
    assert deps == [*got.requirements, "mlflow-app-agent", *OTLP_EXPORTERS]
    assert sources == {"mlflow-app-agent": "wheels/x.whl"}


@pytest.mark.parametrize("logged, flag, full, by", [
    (True, None, True, "log_model(full_mlflow=True)"),
    (False, True, True, "materialize --full-mlflow"),
    (True, False, False, "materialize --no-full-mlflow"),
])
def test_full_mlflow_when_logged_so_or_asked(tmp_path: Path, logged: bool, flag: bool | None,
                                             full: bool, by: str) -> None:
    got = read_model_requirements(model(tmp_path, "mlflow[gateway]==3.1.0\n"),
                                  full_mlflow=flag, logged_full_mlflow=logged)
    assert got.requirements == [("mlflow" if full else "mlflow-skinny") + "[gateway]==3.1.0"]
    assert got.mlflow["distribution"] == ("mlflow" if full else "mlflow-skinny")
    assert got.mlflow["decided_by"] == by


def test_constraints_and_local_files_point_into_model_pip_mode_only(tmp_path: Path) -> None:
    d = model(tmp_path, "-c constraints.txt\ncode/dep-1.0-py3-none-any.whl\n")
    (d / "constraints.txt").write_text("numpy<3\n")
    (d / "code").mkdir()
    (d / "code" / "dep-1.0-py3-none-any.whl").write_bytes(b"PK")
    got = read_model_requirements(d)
    assert pip_roots(got, "./wheels/x.whl") == [
        "-c model/constraints.txt", "./model/code/dep-1.0-py3-none-any.whl", "./wheels/x.whl",
        *OTLP_EXPORTERS]
    with pytest.raises(MaterializeError, match="--installer pip"):
        uv_roots(got, "./wheels/x.whl")


@pytest.mark.parametrize("text, match", [
    ("-r other.txt\n", "not in the model"),
    ("/abs/path/dep.whl\n", "neither a requirement nor a file"),
    ("--extra-index-url https://user:tok@example.com/simple\n", "credentials"),
    ("dep @ file:///home/me/dep.whl\n", "local file"),
])
def test_unshippable_requirements_are_refused(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(MaterializeError, match=match) as info:
        read_model_requirements(model(tmp_path, text))
    assert "tok" not in str(info.value)


def test_the_bundled_wheel_declares_only_the_lean_runtime() -> None:
    requires = app_requires(read_dist_info())
    plain = [r for r in requires if "extra ==" not in r]
    names = {r.split(">")[0].split("=")[0].split("<")[0].strip() for r in plain}
    assert {"mlflow-skinny", "fastapi", "uvicorn", "pydantic", "numpy"} <= names
    assert not names & {"pandas", "gitpython", "uv", "mlflow", "hypothesis"}
    # the notebook install (no extras) still has what logging needs
    default = [r for r in read_dist_info().requires if "extra ==" not in r]
    assert {"pandas>=2.0", "gitpython>=3.1.40"} <= set(default)
    assert set(plain) <= set(default)
    assert 'pandas>=2.0; extra == "log"' in requires
