"""Time ``materialize`` of the quickstart (echo) model: in process and as the CLI.

    python benchmarks/materialize/bench.py [--runs 5]

Logs the echo example into a fresh sqlite store (as ``quickstart`` does), warms the wheel
cache once, then materializes the same version ``--runs`` times each way and checks the
trees are byte-identical. Prints median / max seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-materialize-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["MLFLOW_APP_AGENT_CACHE_DIR"] = str(work / "cache")

    import mlflow

    import mlflow_app_agent
    from mlflow_app_agent.apps import materialize

    mlflow.set_tracking_uri(uri)
    info = mlflow_app_agent.log_model(str(ROOT / "examples" / "echo" / "agent.py"),
                                      name="agent", registered_model_name="echo")
    model_uri = f"models:/echo/{info.registered_model_version}"

    started = time.perf_counter()
    first = materialize(model_uri, work / "cold")
    cold = time.perf_counter() - started

    in_process, cli, digests = [], [], {digest(first)}
    for i in range(args.runs):
        started = time.perf_counter()
        out = materialize(model_uri, work / f"warm-{i}")
        in_process.append(time.perf_counter() - started)
        digests.add(digest(out))
    for i in range(args.runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mlflow_app_agent.cli", "materialize",
                        model_uri, str(work / f"cli-{i}")], check=True, capture_output=True)
        cli.append(time.perf_counter() - started)
        digests.add(digest(work / f"cli-{i}"))

    print(f"first materialize (cold wheel cache, mlflow already imported): {cold:.2f} s")
    print(f"in process, warm cache: median {statistics.median(in_process):.2f} s, "
          f"max {max(in_process):.2f} s ({args.runs} runs)")
    print(f"CLI process (incl. Python + MLflow start-up): median {statistics.median(cli):.2f} s,"
          f" max {max(cli):.2f} s ({args.runs} runs)")
    print(f"byte-identical trees: {len(digests) == 1} ({len(digests)} distinct)")


if __name__ == "__main__":
    main()
