"""Benchmark the bundled server against MLflow's AgentServer and bare Starlette.

    /work/venv/bin/python benchmarks/server/bench.py --out benchmarks/server/RESULTS.json

Every server runs in its own subprocess (uvicorn, one worker, 127.0.0.1); the same
asyncio load generator (keep-alive HTTP/1.1 over raw sockets, so the client costs little
CPU) drives all of them. Servers of a scenario run side by side and are measured in
alternating windows (the machine is shared), waiting for all of them to be idle between
windows. Both agent servers trace into one sqlite store (one experiment each):
AgentServer every request (MLflow's defaults), ``ours`` by its default policy (every
request, at most 5 traces/s, written by its trace-writer child process),
``ours-thread-export`` the same policy written by MLflow's in-process export thread,
``ours-trace-all`` every request, ``ours-no-trace`` none; ``ours-no-metrics`` is ``ours``
with metrics off, ``ours-access-log`` is ``ours`` writing its JSON access line per request. A server's CPU, for the idle check between windows, includes its child
processes (our trace writer).
Scenarios:
  (a) sync agent sleeping 20 ms, 32 concurrent clients: requests/s
  (b) async echo, 32 concurrent clients: requests/s
  (c) one stream of 1,000 text deltas: events/s (median of several streams)
  (d) cold start: process start to first 200 on /ready (AgentServer: /health, it has no
      /ready), and to the first answered /invocations
  (e) only with --scenarios e: the (b) echo with no server extensions (``ours``), with one
      no-op extra route + start-up hook, with one pass-through middleware, the package as
      of ``--before-ext-rev`` (before extensions existed), and bare Starlette
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

#: scenario (e): our servers with one no-op extension (``ext_agents.py``)
EXT_AGENTS = {"ours-ext-route": "echo_route", "ours-ext-middleware": "echo_middleware"}
#: scenario (e): a copy of ``mlflow_app_agent`` at ``--before-ext-rev`` (set in main_async)
BEFORE_EXT: dict[str, Path] = {}


def server_cmd(server: str, kind: str, port: int) -> list[str]:
    if server in EXT_AGENTS:
        return [PY, "-m", "mlflow_app_agent.serve",
                f"{HERE / 'ext_agents.py'}:{EXT_AGENTS[server]}",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    if server.startswith("ours"):
        # ours-access-log: the production default, one JSON access line per request (to the
        # server's log file); the others at warning, without access lines
        level = ["--log-level", "info", "--log-format", "json"] if (
            server == "ours-access-log") else ["--log-level", "warning"]
        return [PY, "-m", "mlflow_app_agent.serve", f"{HERE / 'agents.py'}:{kind}",
                "--host", "127.0.0.1", "--port", str(port), *level]
    if server.startswith("agentserver"):
        return [PY, str(HERE / "agentserver_app.py"), kind, str(port)]
    if server == "starlette":
        return [PY, str(HERE / "starlette_app.py"), kind, str(port)]
    raise ValueError(server)


def server_env(server: str, tracking_uri: str, experiment_id: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABRICKS_APP_PORT", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    # As on Databricks Apps (an experiment resource): traces go to MLFLOW_EXPERIMENT_ID.
    # "agentserver-default-exp" leaves it unset (MLflow's Default experiment), which spares
    # AgentServer an experiment lookup per trace: its faster configuration.
    if experiment_id != "0":
        env["MLFLOW_EXPERIMENT_ID"] = experiment_id
    if server == "ours-trace-all":
        env["MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND"] = "0"  # trace every request
    if server.startswith("ours-cap"):  # e.g. ours-cap2: at most 2 traces/s
        env["MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND"] = server.removeprefix("ours-cap")
    if server == "ours-no-metrics":  # metrics (GET /metrics, OTel instruments) off
        env["MLFLOW_APP_AGENT_METRICS"] = "false"
    if server == "ours-no-trace":
        env["MLFLOW_APP_AGENT_TRACING"] = "false"
    if server == "ours-thread-export":  # the previous default: MLflow's export thread
        env["MLFLOW_APP_AGENT_TRACE_EXPORT"] = "thread"
    if server in EXT_AGENTS:  # ext_agents.py imports agents.py
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    if server == "ours-before-ext":  # the package as it was before extensions landed
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(BEFORE_EXT["root"]), env.get("PYTHONPATH")) if p)
    return env


def server_cwd(server: str) -> Path | None:
    """``python -m`` puts the working directory first on sys.path: the baseline runs from
    its own copy's root, or a checkout's ``mlflow_app_agent`` would shadow it."""
    return BEFORE_EXT["root"] if server == "ours-before-ext" else None


def ready_path(server: str) -> str:
    return "/health" if server.startswith("agentserver") else "/ready"


class Server:
    def __init__(self, server: str, kind: str, tracking_uri: str, log_dir: Path,
                 experiment_id: str) -> None:
        self.name = server
        self.port = free_port()
        self.log = log_dir / f"{server}-{kind}-{self.port}.log"
        self.started = time.perf_counter()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(server_cmd(server, kind, self.port), stdout=out,
                                         stderr=subprocess.STDOUT,
                                         env=server_env(server, tracking_uri, experiment_id),
                                         cwd=server_cwd(server))
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
        """SIGTERM, then wait for the server and for its children (our trace writer drains
        its pipe after the server exits), so trace counts are final."""
        children = child_pids(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline and any(
                Path(f"/proc/{c}").exists() and "Z" not in proc_state(c) for c in children):
            time.sleep(0.1)


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
    """``concurrency`` keep-alive clients, each sending the next request when the last ends.
    Counts only what completes inside the measured ``seconds`` after ``warmup``."""
    payload = build_request("POST", "/invocations", BODY, port)
    counts = {"ok": 0, "errors": 0, "sent": 0}
    latencies: list[float] = []
    t_start = time.perf_counter() + warmup
    stop_at = t_start + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                writer.write(payload)
                counts["sent"] += 1
                status, _ = await read_response(reader)
                t1 = time.perf_counter()
                if t_start <= t1 <= stop_at:
                    if status == 200:
                        counts["ok"] += 1
                        latencies.append(t1 - t0)
                    else:
                        counts["errors"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return {**counts, "seconds": seconds, "latencies": latencies}


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
# The machine is shared, so servers of one scenario run side by side and are measured in
# alternating windows: background load hits all of them alike. Between windows we wait
# until every server process is idle (e.g. done exporting traces), so one server's
# leftover work is not billed to the next.

def count_traces(uri: str, experiment_id: str) -> int:
    import sqlite3

    with sqlite3.connect(uri.removeprefix("sqlite:///")) as db:
        row = db.execute("SELECT COUNT(*) FROM trace_info WHERE experiment_id = ?",
                         (experiment_id,)).fetchone()
        return int(row[0])


def _stat_fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def proc_state(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[0] if fields else ""


def child_pids(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of a server and its live children (the trace writer)."""
    total = 0.0
    for p in (pid, *child_pids(pid)):
        fields = _stat_fields(p)
        if fields:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def quiesce(servers: list[Server], max_wait: float = 20.0) -> None:
    deadline = time.perf_counter() + max_wait
    last = {s.name: cpu_seconds(s.proc.pid) for s in servers}
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.3)
        now = {s.name: cpu_seconds(s.proc.pid) for s in servers}
        if all(now[k] - last[k] < 0.02 for k in now):
            return
        last = now


async def start_all(names: list[str], kind: Callable[[str], str], uri: str, logs: Path,
                    experiments: dict[str, str]) -> list[Server]:
    servers = [Server(n, kind(n), uri, logs, experiments[n]) for n in names]
    for srv in servers:
        await srv.wait_ready()
    await asyncio.sleep(2.0)  # background imports (MLflow) finish before timing
    return servers


async def run_throughput(names: list[str], kind: str, uri: str, logs: Path,
                         experiments: dict[str, str], window: float, rounds: int,
                         concurrency: int) -> dict[str, Any]:
    before = {n: count_traces(uri, experiments[n]) for n in names}
    servers = await start_all(names, lambda n: kind, uri, logs, experiments)
    totals = {n: {"ok": 0, "errors": 0, "sent": 0, "seconds": 0.0, "lat": [], "by_round": []}
              for n in names}
    try:
        for srv in servers:
            status, _ = await one_request(srv.port, "POST", "/invocations", BODY)
            assert status == 200, (srv.name, status)
            totals[srv.name]["sent"] += 1
        for r in range(rounds):
            order = servers[r % len(servers):] + servers[: r % len(servers)]
            for srv in order:
                await quiesce(servers)
                res = await closed_loop(srv.port, concurrency, window, warmup=0.5)
                t = totals[srv.name]
                for key in ("ok", "errors", "sent", "seconds"):
                    t[key] += res[key]
                t["lat"].extend(res["latencies"])
                t["by_round"].append(res["ok"] / res["seconds"])
    finally:
        for srv in servers:
            srv.stop()  # SIGTERM: both agent servers flush queued traces on the way out
    out = {}
    for n, t in totals.items():
        lat = sorted(t["lat"])
        out[n] = {
            "rps": t["ok"] / t["seconds"],
            "ok": t["ok"],
            "errors": t["errors"],
            "requests_sent": t["sent"],
            "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else None,
            "traces_written": count_traces(uri, experiments[n]) - before[n],
            # one window per round; a round's windows run back to back, so ratios between
            # servers of one round share the machine's load at that time
            "rps_by_round": t["by_round"],
        }
    return out


async def run_stream(names: list[str], uri: str, logs: Path, experiments: dict[str, str],
                     repeats: int) -> dict[str, Any]:
    servers = await start_all(names, lambda n: "sse" if n == "starlette" else "streamer",
                              uri, logs, experiments)
    rates: dict[str, list[float]] = {n: [] for n in names}
    events = {}
    try:
        for srv in servers:
            await stream_once(srv.port)  # warm-up
        for r in range(repeats):
            order = servers[r % len(servers):] + servers[: r % len(servers)]
            for srv in order:
                await quiesce(servers)
                status, elapsed, n = await stream_once(srv.port)
                assert status == 200
                rates[srv.name].append(n / elapsed)
                events[srv.name] = n
    finally:
        for srv in servers:
            srv.stop()
    return {n: {"events_per_s": statistics.median(v), "best": max(v), "events": events[n],
                "runs": [round(x) for x in v]} for n, v in rates.items()}


async def run_cold(names: list[str], uri: str, logs: Path, experiments: dict[str, str],
                   repeats: int) -> dict[str, Any]:
    ready: dict[str, list[float]] = {n: [] for n in names}
    first: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(repeats):
        for name in names:
            srv = Server(name, "echo", uri, logs, experiments[name])
            try:
                ready[name].append(await srv.wait_ready())
                while True:
                    status, _ = await one_request(srv.port, "POST", "/invocations", BODY)
                    if status == 200:
                        break
                    await asyncio.sleep(0.005)
                first[name].append(time.perf_counter() - srv.started)
            finally:
                srv.stop()
    return {n: {"ready_s": statistics.median(ready[n]),
                "first_invocation_s": statistics.median(first[n]),
                "ready_runs": [round(x, 3) for x in ready[n]]} for n in names}


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


ALL_SERVERS = ["ours", "ours-no-metrics", "ours-access-log", "ours-thread-export", "ours-trace-all", "ours-no-trace",
               "agentserver",
               "starlette"]
EXT_SERVERS = ["ours", "ours-ext-route", "ours-ext-middleware", "ours-before-ext", "starlette"]


def export_package(rev: str, into: Path) -> str:
    """``mlflow_app_agent`` as of git ``rev``, unpacked under ``into`` (put first on
    PYTHONPATH it shadows the installed package; the dependencies stay the same)."""
    into.mkdir()
    repo = HERE.parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "mlflow_app_agent"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", rev], check=True,
                            capture_output=True, text=True).stdout.strip()
    BEFORE_EXT["root"] = into
    return commit
AGENT_SERVERS = ["agentserver", "agentserver-default-exp"]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    logs = work / "logs"
    logs.mkdir()
    # Create the store (schema migrations) and one experiment per server, before timing.
    made = subprocess.run(
        [PY, "-c", "import json, sys, mlflow; c = mlflow.MlflowClient(sys.argv[1]); "
         "print(json.dumps({n: c.create_experiment('bench-' + n) for n in sys.argv[2:]}))",
         uri, *ALL_SERVERS, *EXT_SERVERS[1:-1]], check=True, capture_output=True, text=True)
    experiments = json.loads(made.stdout.strip().splitlines()[-1])
    experiments["agentserver-default-exp"] = "0"
    results: dict[str, Any] = {"tracking_store": "one sqlite file shared by all servers, "
                                                 "one experiment per server"}
    step: Callable[[str], None] = lambda s: print(s, flush=True)  # noqa: E731
    w, rounds = args.window, args.rounds
    if "a" in args.scenarios:
        step("(a) sync 20 ms agent")
        results["a"] = await run_throughput(["ours", "ours-trace-all", *AGENT_SERVERS],
                                            "sleepy", uri, logs, experiments, w, rounds, 32)
    if "b" in args.scenarios:
        step("(b) async echo")
        names = [*ALL_SERVERS, "agentserver-default-exp"]
        if args.servers:
            names = [n for n in names if n in args.servers.split(",")]
        results["b"] = await run_throughput(names, "echo", uri, logs, experiments, w, rounds, 32)
    if "c" in args.scenarios:
        step("(c) one stream of 1,000 deltas")
        results["c"] = await run_stream(["ours", "agentserver", "starlette"], uri, logs,
                                        experiments, args.stream_repeats)
    if "d" in args.scenarios:
        step("(d) cold start")
        results["d"] = await run_cold(["ours", "agentserver"], uri, logs, experiments,
                                      args.cold_repeats)
    if "e" in args.scenarios:
        step(f"(e) async echo: no extensions vs one no-op extension vs {args.before_ext_rev}")
        before = export_package(args.before_ext_rev, work / "before-ext")
        probe = "import mlflow_app_agent; print(mlflow_app_agent.__file__)"
        check = subprocess.run([PY, "-c", probe],
                               env=server_env("ours-before-ext", uri, "0"),
                               cwd=server_cwd("ours-before-ext"), capture_output=True,
                               text=True, check=True).stdout.strip()
        assert check.startswith(str(work / "before-ext")), check  # not the checkout's package
        results["e"] = await run_throughput(EXT_SERVERS, "echo", uri, logs, experiments, w,
                                            args.ext_rounds, 32)
        results["e_before_ext_commit"] = before
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
    parser.add_argument("--scenarios", default="abcd",
                        help="any of abcde; (e), extensions' cost, runs only when asked")
    parser.add_argument("--ext-rounds", type=int, default=6,
                        help="windows per server in (e): its servers differ by a few %%")
    parser.add_argument("--before-ext-rev", default="bf3e467",
                        help="(e): git revision of main before extensions were merged")
    parser.add_argument("--window", type=float, default=4.0,
                        help="seconds per measured window (throughput scenarios)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="windows per server (throughput scenarios)")
    parser.add_argument("--stream-repeats", type=int, default=15)
    parser.add_argument("--cold-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--servers", default="",
                        help="comma-separated servers for (b) (default: all), e.g. "
                             "ours,ours-no-metrics,starlette")
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


def by_round(rows: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    """``a``/``b`` per round (their windows ran back to back): every round's ratio and the
    median, which a burst of load on the shared machine during one window moves less than
    the ratio of totals."""
    pairs = [x / y for x, y in zip(rows[a].get("rps_by_round", []),
                                   rows[b].get("rps_by_round", []), strict=False) if y]
    if not pairs:
        return None
    return {"median": statistics.median(pairs), "rounds": pairs}


def summary(r: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the faster of the two AgentServer configurations."""
    def best_agentserver(rows: dict[str, Any], key: str) -> float:
        return max(v[key] for k, v in rows.items() if k.startswith("agentserver"))

    out: dict[str, Any] = {}
    if "a" in r:
        out["a_vs_agentserver"] = ratio(r["a"]["ours"]["rps"], best_agentserver(r["a"], "rps"))
    if "b" in r:
        if any(k.startswith("agentserver") for k in r["b"]):
            out["b_vs_agentserver"] = ratio(r["b"]["ours"]["rps"],
                                            best_agentserver(r["b"], "rps"))
        if "starlette" in r["b"]:
            out["b_vs_starlette"] = ratio(r["b"]["ours"]["rps"], r["b"]["starlette"]["rps"])
            out["b_vs_starlette_by_round"] = by_round(r["b"], "ours", "starlette")
            if "ours-access-log" in r["b"]:
                out["b_access_log_vs_starlette"] = ratio(r["b"]["ours-access-log"]["rps"],
                                                         r["b"]["starlette"]["rps"])
        if "ours-no-metrics" in r["b"]:
            out["b_metrics_on_vs_off"] = ratio(r["b"]["ours"]["rps"],
                                               r["b"]["ours-no-metrics"]["rps"])
        if "ours-access-log" in r["b"]:
            out["b_access_log_vs_none"] = ratio(r["b"]["ours-access-log"]["rps"],
                                                r["b"]["ours"]["rps"])
    if "c" in r:
        out["c_vs_agentserver"] = ratio(r["c"]["ours"]["events_per_s"],
                                        r["c"]["agentserver"]["events_per_s"])
    if "d" in r:
        out["d_vs_agentserver"] = ratio(r["d"]["ours"]["ready_s"], r["d"]["agentserver"]["ready_s"])
    if "e" in r:
        for name in EXT_SERVERS[1:]:
            out[f"e_{name}_vs_ours"] = ratio(r["e"][name]["rps"], r["e"]["ours"]["rps"])
        out["e_ours_vs_starlette"] = ratio(r["e"]["ours"]["rps"], r["e"]["starlette"]["rps"])
    return out


if __name__ == "__main__":
    main()
