"""Resolution for the Apps target with the real pinned uv against the package index: bad
targets, unresolvable requirements, an unreachable index, killed runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_app_agent.apps import materialize
from mlflow_app_agent.apps.build.materialize import BuildOptions
from mlflow_app_agent.apps.build.resolve import parse_exclude_newer, parse_target
from mlflow_app_agent.errors import MaterializeError

MLMODEL = """flavors:
  python_function:
    loader_module: plain_agent
    python_version: 3.11.7
utc_time_created: '2026-11-20 10:00:00.000000'
"""


def fake_model(tmp_path: Path, requirements: str) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    (d / "MLmodel").write_text(MLMODEL)
    (d / "requirements.txt").write_text(requirements)
    return d


def nothing_written(parent: Path) -> bool:
    return sorted(p.name for p in parent.iterdir()) == ["m"]


@pytest.mark.parametrize("python, platform, match", [
    ("2.7", None, r"--python '2\.7'.*3\.11"),
    ("3.10", None, r"--python '3\.10'"),
    ("three", None, r"--python 'three'"),
    (None, "sparc-solaris", r"--platform 'sparc-solaris' is not a known target"),
])
def test_bad_targets_are_one_line_errors(python: str | None, platform: str | None,
                                         match: str) -> None:
    with pytest.raises(MaterializeError, match=match) as info:
        parse_target(python, platform)
    assert "\n" not in info.value.message


def test_cli_bad_python_is_one_error_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mlflow_app_agent.cli", "materialize", str(tmp_path / "x"),
         str(tmp_path / "app"), "--python", "2.7"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: --python '2.7'")
    assert "Traceback" not in proc.stderr


def test_exclude_newer_forms() -> None:
    assert parse_exclude_newer("2026-11-01") == "2026-11-01T00:00:00Z"
    assert parse_exclude_newer("2026-11-20 10:00:00.123456") == "2026-11-20T10:00:00Z"
    assert parse_exclude_newer("2026-11-20T12:00:00+02:00") == "2026-11-20T10:00:00Z"
    with pytest.raises(MaterializeError, match="not a date"):
        parse_exclude_newer("last tuesday")


@pytest.mark.parametrize("installer", ["uv", "pip"])
@pytest.mark.parametrize("requirement, package", [
    ("pywin32==306", "pywin32"),  # wheels for Windows only, no sdist
    ("fastapi==0.1.0", "fastapi"),  # conflicts with the bundled server's fastapi>=0.110
])
def test_unresolvable_for_the_target_names_package_and_target(
    tmp_path: Path, installer: str, requirement: str, package: str
) -> None:
    src = fake_model(tmp_path, f"{requirement}\n")
    with pytest.raises(MaterializeError) as info:
        materialize(str(src), tmp_path / "app", options=BuildOptions(installer=installer))
    message = info.value.message
    assert "cannot be resolved for Python 3.11 on x86_64-manylinux_2_35" in message
    assert package in message and "\n" not in message
    assert nothing_written(tmp_path)


@pytest.fixture
def silent_index() -> Iterator[str]:
    """A loopback 'index' that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/simple"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    sock.close()


def test_unreachable_index_is_a_clear_error_within_the_timeout(
    tmp_path: Path, silent_index: str
) -> None:
    src = fake_model(tmp_path, "requests==2.32.3\n")
    started = time.monotonic()
    with pytest.raises(MaterializeError) as info:
        materialize(str(src), tmp_path / "app", options=BuildOptions(
            index_url=silent_index, timeout=5, exclude_newer="2026-11-01"))
    assert time.monotonic() - started < 60  # generous: the deadline is 5 s
    assert "within --timeout 5 s" in info.value.message or "unreachable" in info.value.message
    assert nothing_written(tmp_path)


def test_refused_index_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    src = fake_model(tmp_path, "requests==2.32.3\n")
    with pytest.raises(MaterializeError, match="package index is unreachable"):
        materialize(str(src), tmp_path / "app", options=BuildOptions(
            index_url=f"http://127.0.0.1:{port}/simple", timeout=30))
    assert nothing_written(tmp_path)


def test_index_url_with_credentials_is_refused(tmp_path: Path) -> None:
    src = fake_model(tmp_path, "requests==2.32.3\n")
    with pytest.raises(MaterializeError, match="credentials") as info:
        materialize(str(src), tmp_path / "app", options=BuildOptions(
            index_url="https://me:s3cret@index.example/simple"))
    assert "s3cret" not in info.value.message
    assert nothing_written(tmp_path)


def _staging(parent: Path) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(".app.tmp-")]


def _start_hanging_materialize(src: Path, out: Path, index: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow_app_agent.cli", "materialize", str(src), str(out),
         "--index-url", index, "--timeout", "300"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while not _staging(out.parent) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    assert _staging(out.parent), "materialize never created its staging directory"
    return proc


@pytest.mark.e2e
def test_sigterm_leaves_no_staging_and_sigkill_leftovers_are_cleaned(
    tmp_path: Path, silent_index: str
) -> None:
    src = fake_model(tmp_path, "requests==2.32.3\n")
    out = tmp_path / "app"
    proc = _start_hanging_materialize(src, out, silent_index)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Error: interrupted; nothing was written" in err
    assert _staging(tmp_path) == [] and not out.exists()

    proc = _start_hanging_materialize(src, out, silent_index)
    proc.kill()  # SIGKILL: nothing can clean up
    proc.communicate(timeout=60)
    assert len(_staging(tmp_path)) == 1
    # the next run removes the dead run's staging dir (and fails on its own bad input)
    with pytest.raises(MaterializeError):
        materialize(str(src), out, options=BuildOptions(python="3.11",
                                                        exclude_newer="not a date"))
    assert len(_staging(tmp_path)) == 1  # argument errors stop before touching anything
    with pytest.raises(MaterializeError):
        materialize(str(src), out, options=BuildOptions(index_url=silent_index, timeout=2))
    assert _staging(tmp_path) == [] and not out.exists()
