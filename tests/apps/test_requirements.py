from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_app_agent.apps.build.requirements import build_requirements, toolkit_pins
from mlflow_app_agent.errors import MaterializeError

PINS = {"fastapi": "fastapi==0.110.0", "pydantic": "pydantic==2.9.0",
        "cloudpickle": "cloudpickle==3.0.0"}


def model(tmp_path: Path, text: str) -> Path:
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    (d / "requirements.txt").write_text(text)
    return d


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_model_pins_win_and_toolkit_line_is_replaced_by_the_wheel(tmp_path: Path) -> None:
    d = model(tmp_path, "mlflow==3.1.0\ncloudpickle==3.1.1\npydantic>=2\n"
                        "mlflow-app-agent==0.1.0  # not on the index\n")
    out = lines(build_requirements(d, "./wheels/x.whl", pins=dict(PINS)))
    assert out == ["mlflow==3.1.0", "cloudpickle==3.1.1", "pydantic>=2",
                   "fastapi==0.110.0", "pydantic==2.9.0", "./wheels/x.whl"]


def test_conflicting_range_drops_our_pin(tmp_path: Path) -> None:
    d = model(tmp_path, "pydantic<2.5\n")
    text = build_requirements(d, "./wheels/x.whl", pins=dict(PINS))
    assert "pydantic==2.9.0" not in text and "pydantic<2.5" in text
    assert "model pins them: pydantic" in text


def test_constraints_and_local_files_point_into_model(tmp_path: Path) -> None:
    d = model(tmp_path, "-c constraints.txt\ncode/dep-1.0-py3-none-any.whl\n")
    (d / "constraints.txt").write_text("numpy<3\n")
    (d / "code").mkdir()
    (d / "code" / "dep-1.0-py3-none-any.whl").write_bytes(b"PK")
    out = lines(build_requirements(d, "./wheels/x.whl", pins={}))
    assert out == ["-c model/constraints.txt", "./model/code/dep-1.0-py3-none-any.whl",
                   "./wheels/x.whl"]


@pytest.mark.parametrize("text, match", [
    ("-r other.txt\n", "not in the model"),
    ("/abs/path/dep.whl\n", "neither a requirement nor a file"),
    ("--extra-index-url https://user:tok@example.com/simple\n", "credentials"),
    ("dep @ file:///home/me/dep.whl\n", "local file"),
])
def test_unshippable_requirements_are_refused(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(MaterializeError, match=match) as info:
        build_requirements(model(tmp_path, text), "./wheels/x.whl", pins={})
    assert "tok" not in str(info.value)


def test_toolkit_pins_cover_the_runtime_closure() -> None:
    import importlib.metadata

    pins = toolkit_pins()
    for name in ("fastapi", "uvicorn", "mlflow-skinny", "starlette", "pydantic-core",
                 "opentelemetry-exporter-otlp-proto-http"):
        assert name in pins, name
    assert pins["fastapi"] == f"fastapi=={importlib.metadata.version('fastapi')}"
    assert "mlflow-app-agent" not in pins
    assert "pytest" not in pins  # dev extras stay out
