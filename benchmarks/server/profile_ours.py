"""py-spy profile of a server under benchmark (b) load (how RESULTS.md's profile was made):

    /work/venv/bin/python benchmarks/server/profile_ours.py [ours|ours-no-trace|...]

Writes /tmp/spy-<server>.txt (py-spy raw format, GIL-holding samples, per thread) and
prints the share of samples per component.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

LIBS = [
    ("h11/", "uvicorn + h11 (HTTP parsing, transport)"),
    ("uvicorn/", "uvicorn + h11 (HTTP parsing, transport)"),
    ("starlette/", "starlette/fastapi"),
    ("fastapi/", "starlette/fastapi"),
    ("pydantic", "pydantic (request validation)"),
    ("json/", "json encode/decode"),
    ("anyio/", "anyio"),
    ("mlflow_app_agent/", "mlflow_app_agent (handlers)"),
    ("asyncio/", "asyncio event loop"),
]


def summarize(path: Path) -> None:
    shares: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        if "MlflowTraceLogging" in frames[0]:
            shares["MLflow trace export thread (sqlite writes)"] += n
        elif "trace-writer" in frames[0]:
            shares["trace writer threads (pickle + pipe to the writer process)"] += n
        elif any(re.search(r"\(mlflow/", f) for f in frames):
            shares["MLflow on the loop (span start/end, inputs/outputs)"] += n
        else:
            leaf = next((name for f in reversed(frames) for key, name in LIBS if "(" + key in f),
                        "other")
            shares[leaf] += n
    print(f"{total} GIL-holding samples")
    for name, n in shares.most_common():
        print(f"| {name} | {100 * n / total:.1f}% |")


async def main(server: str) -> None:
    work = Path(tempfile.mkdtemp())
    uri = f"sqlite:///{work / 'm.db'}"
    logs = work / "logs"
    logs.mkdir()
    made = subprocess.run(
        [bench.PY, "-c", "import mlflow, sys; "
         "print(mlflow.MlflowClient(sys.argv[1]).create_experiment('x'))", uri],
        check=True, capture_output=True, text=True)
    experiment = made.stdout.strip().splitlines()[-1]
    srv = bench.Server(server, "echo", uri, logs, experiment)
    out = Path(f"/tmp/spy-{server}.txt")
    try:
        await srv.wait_ready()
        await asyncio.sleep(3)
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(srv.proc.pid),
             "--duration", "6", "--rate", "200", "--format", "raw", "--threads", "--gil",
             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res = await bench.closed_loop(srv.port, 32, 6.5, 0.2)
        spy.wait()
        print(server, "requests/s", res["ok"] / res["seconds"])
    finally:
        srv.stop()
    summarize(out)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "ours"))
