from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from mlflow_app_agent.apps.build import wheel


def test_wheel_is_byte_deterministic_and_cached(tmp_path: Path) -> None:
    a = wheel.write_wheel(tmp_path / "a")
    b = wheel.write_wheel(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    cached = wheel.build_wheel()
    assert cached.read_bytes() == a.read_bytes()
    assert wheel.build_wheel() == cached  # second call: from the cache
    assert cached.name == wheel.wheel_filename()


def test_wheel_contents_and_record(tmp_path: Path) -> None:
    path = wheel.write_wheel(tmp_path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        package = [n for n in names if n.startswith("mlflow_app_agent/")]
        assert package == sorted(package) and names[: len(package)] == package
        assert names[-1].endswith(".dist-info/RECORD")
        assert "mlflow_app_agent/serve.py" in names
        assert "mlflow_app_agent/py.typed" in names
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
        assert {zf.getinfo(n).date_time for n in names} == {(1980, 1, 1, 0, 0, 0)}
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        meta = zf.read(f"{dist_info}/METADATA").decode()
        assert "Name: mlflow-app-agent" in meta and "Requires-Dist: fastapi" in meta
        assert "mlflow-app-agent = mlflow_app_agent.cli:main" in zf.read(
            f"{dist_info}/entry_points.txt").decode()
        for line in zf.read(f"{dist_info}/RECORD").decode().splitlines():
            name, digest, size = line.split(",")
            if not digest:
                continue
            data = zf.read(name)
            expect = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expect.decode() and int(size) == len(data)


def test_source_change_changes_the_key(tmp_path: Path) -> None:
    root = tmp_path / "mlflow_app_agent"
    root.mkdir()
    (root / "__init__.py").write_text("x = 1\n")
    first = wheel.source_key(root)
    (root / "__init__.py").write_text("x = 2\n")
    assert wheel.source_key(root) != first
