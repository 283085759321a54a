"""Real uvicorn processes on loopback: the openai client, disconnects, ports, shutdown."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import free_port

pytestmark = pytest.mark.e2e


def test_openai_client_create_and_stream(serve: Any, agents_path: Path) -> None:
    from openai import OpenAI

    server = serve(f"{agents_path}:echo")
    client = OpenAI(base_url=server.url, api_key="unused", max_retries=0)

    response = client.responses.create(model="echo", input="hello from openai")
    assert response.output_text == "hello from openai"
    assert response.status == "completed"

    stream = client.responses.create(model="echo", input="one two three", stream=True)
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "one two three "
    assert events[0].type == "response.created" and events[-1].type == "response.completed"

    with client.responses.stream(model="echo", input="accumulate me") as managed:
        texts = [e.delta for e in managed if e.type == "response.output_text.delta"]
        final = managed.get_final_response()
    assert "".join(texts) == "accumulate me "
    assert final.output_text == "accumulate me"


def test_openai_client_sees_agent_errors(serve: Any, agents_path: Path) -> None:
    import openai

    server = serve(f"{agents_path}:broken")
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(model="broken", input="x")
    assert info.value.body["code"] == "agent_error"  # type: ignore[index]
    with pytest.raises(openai.APIError, match="model crashed"):
        list(client.responses.create(model="broken", input="late", stream=True))


@pytest.mark.parametrize("agent_name", ["endless", "endless_async"])
def test_client_disconnect_closes_the_generator(
    serve: Any, agents_path: Path, tmp_path: Path, agent_name: str
) -> None:
    marker = tmp_path / f"{agent_name}.closed"
    server = serve(f"{agents_path}:{agent_name}", env={"ENDLESS_MARKER": str(marker)})
    from httpx_sse import connect_sse

    with httpx.Client(timeout=10) as client, connect_sse(
            client, "POST", server.url + "/invocations",
            json={"input": [{"role": "user", "content": "go"}], "stream": True}) as source:
        assert source.response.status_code == 200
        for seen, _event in enumerate(source.iter_sse(), start=1):
            if seen >= 5:
                break
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), server.stop()
    # The server is still healthy afterwards.
    assert httpx.get(server.url + "/health").status_code == 200


def test_sync_agent_does_not_block_health(serve: Any, agents_path: Path,
                                          tmp_path: Path) -> None:
    # /health answers while a sync invoke is blocked inside the agent (it waits for a gate
    # this test opens only afterwards): proven by order of events, not by timing.
    import threading

    server = serve(f"{agents_path}:gated", env={"GATE_DIR": str(tmp_path)})
    answers: dict[str, httpx.Response] = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        blocked = threading.Thread(target=lambda: answers.update(invoke=client.post(
            "/invocations", json={"input": [{"role": "user", "content": "x"}]})))
        blocked.start()
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "started").exists(), server.stop()
        assert client.get("/health").status_code == 200
        assert "invoke" not in answers  # still inside the agent: the gate is closed
        (tmp_path / "open").touch()
        blocked.join(60)
    assert answers["invoke"].status_code == 200, answers["invoke"].text


def test_databricks_app_port_wins(serve: Any, agents_path: Path) -> None:
    port = free_port()
    server = serve(f"{agents_path}:echo", env={"DATABRICKS_APP_PORT": str(port)})
    assert server.port == port
    assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200


def _writer_pids(server_pid: int) -> list[int]:
    """Trace writer processes of the server (Linux /proc): its children, and writers it
    started that outlive it (re-parented, they still carry ``--server-pid``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if b"mlflow_app_agent.server.trace_writer" not in cmdline:
            continue
        if ppid == server_pid or f"--server-pid\0{server_pid}\0".encode() in cmdline:
            found.append(int(entry.name))
    return found


# How long a test lets the trace writer take to finish after its server is gone. The writer
# runs at nice 5 and may still be importing MLflow when the server stops: with two CPU burners
# and other test runs on a 2-core box, 40 traces were written ~50 s after the server exited,
# 300 traces took more than 300 s.
# A deadline, not a measurement: the tests poll and go on as soon as the writer is gone.
WRITER_EXIT_TIMEOUT = 600.0


def _wait_for(predicate: Any, timeout: float = WRITER_EXIT_TIMEOUT) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` passes (False). The default
    is as generous: a traced server's first /agent/info with ``export: process`` waits for
    MLflow's import and a new sqlite store's tables, >2 min on a loaded 2-core box."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_sigterm_right_after_a_burst_writes_every_trace(
    serve: Any, agents_path: Path, tmp_path: Path
) -> None:
    db = tmp_path / "traces.db"
    server = serve(f"{agents_path}:echo", env={
        "MLFLOW_APP_AGENT_TRACING": "true",
        "MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND": "0",  # trace every request
        "MLFLOW_TRACKING_URI": f"sqlite:///{db}",
    })
    burst = 40
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert _wait_for(lambda: client.get("/agent/info").json()["tracing"]["export"]
                         == "process")
        for i in range(burst):
            resp = client.post("/invocations", json={"input": [{"role": "user", "content": "x"}]},
                               headers={"X-Request-Id": f"sigterm-{i}"})
            assert resp.status_code == 200
    writers = _writer_pids(server.proc.pid)
    assert len(writers) == 1
    server.proc.send_signal(signal.SIGTERM)  # at once: most traces are still queued
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown.
    assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log.read_text()
    assert _wait_for(lambda: not Path(f"/proc/{writers[0]}").exists(),
                     timeout=WRITER_EXIT_TIMEOUT), server.log.read_text()[-2000:]
    import mlflow

    traces = mlflow.MlflowClient(f"sqlite:///{db}").search_traces(
        locations=["0"], max_results=100
    )
    ids = sorted(t.info.client_request_id for t in traces)
    assert ids == sorted(f"sigterm-{i}" for i in range(burst))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_server_leaves_no_trace_writer_behind(
    serve: Any, agents_path: Path, tmp_path: Path
) -> None:
    server = serve(f"{agents_path}:echo", env={
        "MLFLOW_APP_AGENT_TRACING": "true",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'killed.db'}",
    })
    assert _wait_for(lambda: len(_writer_pids(server.proc.pid)) == 1)
    (writer,) = _writer_pids(server.proc.pid)
    server.proc.kill()
    server.proc.wait(timeout=10)
    # The writer sees its pipe close (or, still starting, its server gone) and exits; it is
    # nobody's zombie once reparented.
    assert _wait_for(lambda: _gone(writer), timeout=WRITER_EXIT_TIMEOUT)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_server_leaves_no_trace_writer_behind_when_a_fork_holds_its_pipe(
    serve: Any, agents_path: Path, tmp_path: Path
) -> None:
    """An agent that forks (a multiprocessing "fork" pool) leaves a child holding a copy of
    the writer's pipe, so the writer never sees the pipe end: it must notice its server is
    gone. (Before the writer watched its parent, it waited on that pipe forever.)"""
    server = serve(f"{agents_path}:forking", env={
        "MLFLOW_APP_AGENT_TRACING": "true",
        "MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND": "0",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'forked.db'}",
        "FORK_DIR": str(tmp_path),
    })
    child = None
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            assert _wait_for(lambda: client.get("/agent/info").json()["tracing"]["export"]
                             == "process")
            resp = client.post("/invocations",
                               json={"input": [{"role": "user", "content": "fork"}]})
            assert resp.status_code == 200, resp.text
            child = int((tmp_path / "child.pid").read_text())
            for _ in range(3):  # traces after the fork go through the shared pipe
                resp = client.post("/invocations",
                                   json={"input": [{"role": "user", "content": "x"}]})
                assert resp.status_code == 200
        (writer,) = _writer_pids(server.proc.pid)
        server.proc.kill()
        server.proc.wait(timeout=60)
        assert _wait_for(lambda: _gone(writer), timeout=WRITER_EXIT_TIMEOUT)
        assert not _gone(child)  # the fork still held the pipe all along
    finally:
        (tmp_path / "release").touch()
        if child is not None:
            assert _wait_for(lambda: _gone(child), timeout=60)


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists() or "(Z)" in _state(pid)


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return "(" + stat.rsplit(")", 1)[1].split()[0] + ")"


def test_ready_only_after_load_and_port_open_first(serve: Any, tmp_path: Path) -> None:
    agent_file = tmp_path / "sleepy_agent.py"
    agent_file.write_text(
        "import time\n"
        "from mlflow_app_agent import Agent\n"
        "time.sleep(2)\n"
        "agent = Agent('sleepy')\n"
        "@agent.invoke_method\n"
        "def invoke(request):\n"
        "    return {'output': []}\n"
    )
    server = serve(str(agent_file), wait=False)
    deadline = time.monotonic() + 20
    statuses: list[int] = []
    while time.monotonic() < deadline:
        try:
            statuses.append(httpx.get(server.url + "/ready").status_code)
            assert httpx.get(server.url + "/health").status_code == 200
        except httpx.ConnectError:
            pass
        if statuses and statuses[-1] == 200:
            break
        time.sleep(0.05)
    assert 503 in statuses and statuses[-1] == 200


def test_large_body_gets_413_over_the_wire(serve: Any, agents_path: Path) -> None:
    server = serve(f"{agents_path}:echo")
    body = b'{"input": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    resp = httpx.post(server.url + "/invocations", content=body, timeout=30,
                      headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


def test_port_conflict_fails_loudly(serve: Any, agents_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = serve(f"{agents_path}:echo", env={"DATABRICKS_APP_PORT": str(port)},
                       wait=False)
        assert server.proc.wait(timeout=30) != 0


def test_client_text_in_mlflow_validation_warnings_never_reaches_the_log(
    serve: Any, agents_path: Path
) -> None:
    # MLflow warns "Invalid tool type: <value>" for unknown tool types: in a server that is
    # caller-controlled text in stderr, once per request.
    server = serve(f"{agents_path}:echo")
    body = {"input": [{"role": "user", "content": "x"}],
            "tools": [{"type": "evil\n2026-01-01 FAKE LOG LINE", "name": "t"}]}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(3):
            assert client.post("/invocations", json=body).status_code == 200
    log = server.stop()
    assert "FAKE LOG LINE" not in log and "Invalid tool type" not in log
