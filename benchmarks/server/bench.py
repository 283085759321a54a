"""Benchmark the bundled server against MLflow's AgentServer and bare Starlette.

    /work/venv/bin/python benchmarks/server/bench.py --out benchmarks/server/RESULTS.json

Every server runs in its own subprocess (uvicorn, one worker, 127.0.0.1); the same
asyncio load generator (keep-alive HTTP/1.1 over raw sockets, so the client costs little
CPU) drives all of them. Both agent servers trace with MLflow defaults into the same sqlite
store. Scenarios:
  (a) sync agent sleeping 20 ms, 32 concurrent clients: requests/s
  (b) async echo, 32 concurrent clients: requests/s
  (c) one stream of 1,000 text deltas: events/s (median of several streams)
  (d) cold start: process start to first 200 on /ready (AgentServer: /health, it has no
      /ready), and to the first answered /invocations
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable
BODY = json.dumps({"input": [{"role": "user", "content": "hello benchmark"}]}).encode()
STREAM_BODY = json.dumps(
    {"input": [{"role": "user", "content": "go"}], "stream": True}
).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- servers -----------------------------------------------------------------------------------

def server_cmd(server: str, kind: str, port: int) -> list[str]:
    if server.startswith("ours"):
        return [PY, "-m", "mlflow_app_agent.serve", f"{HERE / 'agents.py'}:{kind}",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if server == "agentserver":
        return [PY, str(HERE / "agentserver_app.py"), kind, str(port)]
    if server == "starlette":
        return [PY, str(HERE / "starlette_app.py"), kind, str(port)]
    raise ValueError(server)


def server_env(server: str, tracking_uri: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABRICKS_APP_PORT", None)
    if server == "ours-trace-all":
        env["MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND"] = "0"  # trace every request
    return env


def ready_path(server: str) -> str:
    return "/health" if server == "agentserver" else "/ready"


class Server:
    def __init__(self, server: str, kind: str, tracking_uri: str, log_dir: Path) -> None:
        self.name = server
        self.port = free_port()
        self.log = log_dir / f"{server}-{kind}-{self.port}.log"
        self.started = time.perf_counter()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(server_cmd(server, kind, self.port), stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env=server_env(server, tracking_uri))
        self.path = ready_path(server)

    async def wait_ready(self, timeout: float = 60) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                status, _ = await one_request(self.port, "GET", self.path, b"")
                if status == 200:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            await asyncio.sleep(0.005)
        raise RuntimeError(f"{self.name} not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- the load generator ---------------------------------------------------------------------

def build_request(method: str, path: str, body: bytes, port: int) -> bytes:
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        return status, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding") == b"chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, await reader.read()


async def one_request(port: int, method: str, path: str, body: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(build_request(method, path, body, port))
        return await read_response(reader)
    finally:
        writer.close()


async def closed_loop(port: int, concurrency: int, seconds: float, warmup: float) -> dict[str, Any]:
    """``concurrency`` keep-alive clients, each sending the next request when the last ends."""
    payload = build_request("POST", "/invocations", BODY, port)
    counts = {"ok": 0, "errors": 0, "total": 0}
    latencies: list[float] = []
    measuring = False
    stop_at = time.perf_counter() + warmup + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                writer.write(payload)
                status, _ = await read_response(reader)
                counts["total"] += 1
                if measuring:
                    if status == 200:
                        counts["ok"] += 1
                        latencies.append(time.perf_counter() - t0)
                    else:
                        counts["errors"] += 1
        finally:
            writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    measuring = True
    t_start = time.perf_counter()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t_start
    latencies.sort()
    return {
        "rps": counts["ok"] / elapsed,
        "ok": counts["ok"],
        "errors": counts["errors"],
        "total": counts["total"] + 1,  # + the check request before the run
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else None,
    }


async def stream_once(port: int) -> tuple[int, float, int]:
    """Events received (``data:`` frames before [DONE]) and seconds from send to [DONE]."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        t0 = time.perf_counter()
        writer.write(build_request("POST", "/invocations", STREAM_BODY, port))
        status, body = await read_response(reader)
        elapsed = time.perf_counter() - t0
    finally:
        writer.close()
    frames = [f for f in body.replace(b"\r\n", b"\n").split(b"\n\n") if f.strip()]
    datas = [f for f in frames if f.startswith(b"data:")]
    assert datas and datas[-1].strip().endswith(b"[DONE]"), body[-200:]
    return status, elapsed, len(datas) - 1


# --- scenarios ------------------------------------------------------------------------------------

def count_traces(uri: str) -> int:
    import sqlite3

    with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
        return int(db.execute("SELECT COUNT(*) FROM trace_info").fetchone()[0])


async def run_throughput(server: str, kind: str, uri: str, logs: Path, seconds: float,
                         concurrency: int) -> dict[str, Any]:
    before = count_traces(uri)
    srv = Server(server, kind, uri, logs)
    try:
        await srv.wait_ready()
        await asyncio.sleep(2.0)  # let background imports (MLflow) finish first
        status, _ = await one_request(srv.port, "POST", "/invocations", BODY)
        assert status == 200, status
        result = await closed_loop(srv.port, concurrency, seconds, warmup=1.0)
        result["requests_total"] = result.pop("total")
    finally:
        srv.stop()  # SIGTERM: both servers flush queued traces on the way out
    result["traces_written"] = count_traces(uri) - before
    return result


async def run_stream(server: str, uri: str, logs: Path, repeats: int) -> dict[str, Any]:
    srv = Server(server, "streamer" if server != "starlette" else "sse", uri, logs)
    try:
        await srv.wait_ready()
        await asyncio.sleep(2.0)
        await stream_once(srv.port)  # warm-up
        rates, n = [], 0
        for _ in range(repeats):
            status, elapsed, n = await stream_once(srv.port)
            assert status == 200
            rates.append(n / elapsed)
        return {"events_per_s": statistics.median(rates), "events": n,
                "runs": [round(r) for r in rates]}
    finally:
        srv.stop()


async def run_cold(server: str, uri: str, logs: Path, repeats: int) -> dict[str, Any]:
    ready, first = [], []
    for _ in range(repeats):
        srv = Server(server, "echo", uri, logs)
        try:
            ready.append(await srv.wait_ready())
            while True:
                status, _ = await one_request(srv.port, "POST", "/invocations", BODY)
                if status == 200:
                    break
                await asyncio.sleep(0.005)
            first.append(time.perf_counter() - srv.started)
        finally:
            srv.stop()
    return {"ready_s": statistics.median(ready), "first_invocation_s": statistics.median(first),
            "ready_runs": [round(r, 3) for r in ready]}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    logs = work / "logs"
    logs.mkdir()
    # Create the store (schema migrations) once, before any timing.
    subprocess.run([PY, "-c", f"import mlflow; mlflow.MlflowClient('{uri}').search_experiments()"],
                   check=True, capture_output=True)
    results: dict[str, Any] = {"tracking_uri": "sqlite (one file shared by all servers)"}
    step: Callable[[str], None] = lambda s: print(s, flush=True)  # noqa: E731

    if "a" in args.scenarios:
        results["a"] = {}
        for server in ("ours", "ours-trace-all", "agentserver"):
            step(f"(a) {server}")
            results["a"][server] = await run_throughput(server, "sleepy", uri, logs,
                                                        args.seconds, 32)
    if "b" in args.scenarios:
        results["b"] = {}
        for server in ("ours", "ours-trace-all", "agentserver", "starlette"):
            step(f"(b) {server}")
            results["b"][server] = await run_throughput(server, "echo", uri, logs,
                                                        args.seconds, 32)
    if "c" in args.scenarios:
        results["c"] = {}
        for server in ("ours", "agentserver", "starlette"):
            step(f"(c) {server}")
            results["c"][server] = await run_stream(server, uri, logs, args.stream_repeats)
    if "d" in args.scenarios:
        results["d"] = {}
        for server in ("ours", "agentserver"):
            step(f"(d) {server}")
            results["d"][server] = await run_cold(server, uri, logs, args.cold_repeats)
    results["logs"] = str(logs)
    return results


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", default="abcd")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--stream-repeats", type=int, default=7)
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    info = machine()
    t0 = time.time()
    results = asyncio.run(main_async(args))
    results["machine"] = {**info, "loadavg_at_end": os.getloadavg(),
                          "wall_s": round(time.time() - t0, 1)}
    results["summary"] = summary(results)
    text = json.dumps(results, indent=2, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def summary(r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "a" in r:
        out["a_vs_agentserver"] = ratio(r["a"]["ours"]["rps"], r["a"]["agentserver"]["rps"])
    if "b" in r:
        out["b_vs_agentserver"] = ratio(r["b"]["ours"]["rps"], r["b"]["agentserver"]["rps"])
        out["b_vs_starlette"] = ratio(r["b"]["ours"]["rps"], r["b"]["starlette"]["rps"])
    if "c" in r:
        out["c_vs_agentserver"] = ratio(r["c"]["ours"]["events_per_s"],
                                        r["c"]["agentserver"]["events_per_s"])
    if "d" in r:
        out["d_vs_agentserver"] = ratio(r["d"]["ours"]["ready_s"], r["d"]["agentserver"]["ready_s"])
    return out


if __name__ == "__main__":
    main()
