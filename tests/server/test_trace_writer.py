"""The trace writer process on its own: it stops once its server is gone, even while a
copy of its pipe stays open (as one held by a process the server forked)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_writer_whose_server_is_gone_before_it_started_exits_with_its_pipe_open() -> None:
    read_end, write_end = os.pipe()  # this test holds the write end open throughout
    try:
        writer = subprocess.Popen(
            [sys.executable, "-m", "mlflow_app_agent.server.trace_writer",
             "--server-pid", str(_dead_pid())],
            stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        os.close(read_end)
        try:
            # Nothing was sent: it exits during start-up, before MLflow's import finishes.
            code = writer.wait(timeout=300)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
        assert code == 0
        assert b"Traceback" not in writer.stderr.read()  # type: ignore[union-attr]
    finally:
        os.close(write_end)


def test_the_writer_parses_its_arguments() -> None:
    from mlflow_app_agent.server.trace_writer import _arguments

    assert _arguments(["--server-pid", "42"]).server_pid == 42
    assert _arguments([]).server_pid is None
