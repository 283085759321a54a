"""Fixtures for server tests: in-process clients and real uvicorn processes on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

AGENTS = Path(__file__).parent / "agents.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reap_group()
        return self.log.read_text()

    def _reap_group(self, grace: float = 10.0) -> None:
        """Servers start in their own session (``start_new_session``): whatever they started
        (the trace writer) and still runs ``grace`` s after the server exited is killed, so a
        process that outlives its server (a bug its own test reports) cannot spin on for the
        rest of the suite and slow every later test."""
        deadline = time.monotonic() + grace
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return  # the group is empty
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


_SQLITE = "sqlite:///"


@pytest.fixture
def serve(tmp_path: Path, empty_store: Callable[[Path], Path]) -> Iterator:
    """``serve(location, *args, env=...)`` starts ``python -m mlflow_app_agent.serve`` on a free
    loopback port and waits for /ready. A sqlite store under ``tmp_path`` that does not
    exist yet starts as a copy of the session's empty store."""
    started: list[ServerProcess] = []

    def start(location: str, *args: str, env: dict[str, str] | None = None,
              wait: bool = True) -> ServerProcess:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        full_env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "MLFLOW_APP_AGENT_TRACING": "false",
            **(env or {}),
        }
        full_env.pop("DATABRICKS_APP_PORT", None)
        store = full_env["MLFLOW_TRACKING_URI"]
        if store.startswith(_SQLITE):
            db = Path(store.removeprefix(_SQLITE))
            if db.parent == tmp_path:
                empty_store(db)
        if env and "DATABRICKS_APP_PORT" in env:
            full_env["DATABRICKS_APP_PORT"] = env["DATABRICKS_APP_PORT"]
            port = int(env["DATABRICKS_APP_PORT"])
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlflow_app_agent.serve", location,
                 "--host", "127.0.0.1", "--port", str(port), *args],
                stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path,
                start_new_session=True,  # its own process group: see ServerProcess._reap_group
            )
        server = ServerProcess(proc, port, log)
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def agents_path() -> Path:
    return AGENTS
