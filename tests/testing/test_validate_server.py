"""The quickstart's way: serve a registry version with ``mlflow-app-agent serve`` (a real
process), then ``mlflow-app-agent validate URL`` (another one)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
CLI = [sys.executable, "-m", "mlflow_app_agent.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served_echo(
    registry: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry["tracking_uri"]}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", registry["echo"], "--host", "127.0.0.1", "--port", str(port),
             "--no-tracing", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready:\n{Path(log).read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "validate", *args], capture_output=True, text=True, timeout=300)


def test_validate_passes_the_served_quickstart_version(served_echo: str) -> None:
    proc = _validate(served_echo, "--max-examples", "25")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASS") == 4
    assert f"OK: server {served_echo}" in proc.stdout


def test_validate_reports_a_wrong_endpoint_cleanly(served_echo: str) -> None:
    proc = _validate(served_echo + "/nothing-here", "--max-examples", "5")
    assert proc.returncode == 2
    assert "has no agent endpoint" in proc.stderr
