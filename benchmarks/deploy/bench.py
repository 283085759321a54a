"""What a Databricks Apps deploy waits for: installing the materialized app and starting it.

For the quickstart's echo agent (logged as a new user would: MLflow infers its
requirements), three materializations of the same model version:

- ``full``: pip mode with full ``mlflow`` pinned (``--installer pip --full-mlflow``), the
  baseline (what every app got before the lean runtime);
- ``pip``:  pip mode, mlflow-skinny and the lean server runtime (``--installer pip``);
- ``uv``:   uv mode (the default): ``pyproject.toml`` + ``uv.lock``, installed with
  ``uv sync --frozen`` as Apps does.

Each is installed into a fresh venv with a cold cache (an empty cache directory) and again
with the cache that run left (warm); then the ``app.yaml`` command is started
``--starts`` times and the time from process start to ``/ready`` = 200 is taken (median).
The machine's pip configuration (local wheel dirs) is switched off: packages come from the
index. Prints a table with ratios against ``full`` and writes ``--json``.

    python benchmarks/deploy/bench.py [--starts 3] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "examples" / "echo" / "agent.py"


def du_mb(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath, name)
            if not p.is_symlink():
                total += p.stat().st_size
    return total / 1e6


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "UV_", "MLFLOW_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"})
    if os.environ.get("PIP_CERT"):
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    env.update(extra)
    return env


def timed(cmd: list[str], **kw: object) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   **kw)  # type: ignore[call-overload]
    return time.perf_counter() - started


def install(app: Path, mode: str, venv: Path, cache: Path) -> float:
    from mlflow_app_agent.apps.build.resolve import uv_bin

    shutil.rmtree(venv, ignore_errors=True)
    if mode == "uv":
        env = clean_env(UV_CACHE_DIR=str(cache), UV_PROJECT_ENVIRONMENT=str(venv))
        return timed([uv_bin(), "sync", "--frozen"], cwd=app, env=env)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = clean_env(PIP_CACHE_DIR=str(cache))
    timed([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--progress-bar", "off",
           "-r", "requirements.txt"], cwd=app, env=env)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_to_ready(app: Path, venv: Path) -> float:
    port = free_port()
    env = clean_env(PATH=f"{venv / 'bin'}:{os.environ['PATH']}", DATABRICKS_APP_PORT=str(port),
                    PYTHONDONTWRITEBYTECODE="1", MLFLOW_APP_AGENT_TRACING="false")
    started = time.perf_counter()
    proc = subprocess.Popen([str(venv / "bin" / "python"), "-m", "mlflow_app_agent.serve", ".",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=app, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = started + 300
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{app.name}: the app exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{app.name}: not ready within 300 s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def imported(venv: Path, app: Path) -> dict[str, bool]:
    code = ("import sys, mlflow_app_agent.serve; from mlflow_app_agent.model.load import "
            "load_agent; load_agent('model'); "
            "print(','.join(m for m in ('pandas', 'numpy', 'git', 'sklearn') if m in sys.modules))")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=app, text=True,
                         capture_output=True, env=clean_env(MLFLOW_APP_AGENT_TRACING="false"))
    names = out.stdout.strip().split(",") if out.returncode == 0 else ["(failed)"]
    return {m: m in names for m in ("pandas", "numpy", "git", "sklearn")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import mlflow_app_agent
    from mlflow_app_agent.apps.build.materialize import BuildOptions, materialize

    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    model = work / "echo-model"
    mlflow_app_agent.save_model(str(ECHO), model)  # requirements inferred by MLflow
    variants = {
        "full": BuildOptions(installer="pip", full_mlflow=True),
        "pip": BuildOptions(installer="pip"),
        "uv": BuildOptions(installer="uv"),
    }
    rows: dict[str, dict[str, object]] = {}
    for name, opts in variants.items():
        app = materialize(str(model), work / f"app-{name}", options=opts)
        cache = work / f"cache-{name}"
        venv = work / f"venv-{name}"
        cold = install(app, opts.installer, venv, cache)
        warm = install(app, opts.installer, venv, cache)
        ready = statistics.median(time_to_ready(app, venv) for _ in range(args.starts))
        rows[name] = {"installer": opts.installer, "venv_mb": round(du_mb(venv), 1),
                      "install_cold_s": round(cold, 1), "install_warm_s": round(warm, 1),
                      "ready_s": round(ready, 2), "imports": imported(venv, app)}
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)

    base = rows["full"]
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; model: examples/echo (requirements as MLflow "
          f"inferred them: {(model / 'requirements.txt').read_text().split()})\n")
    print("| variant | installer | venv MB | x full | install cold s | x full | "
          "install warm s | x full | to /ready s | x full | imports at serve |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        def ratio(key: str, r: dict[str, object] = r) -> str:
            return f"{float(r[key]) / float(base[key]):.2f}"  # type: ignore[arg-type]
        loaded = ", ".join(m for m, on in r["imports"].items() if on) or "-"  # type: ignore[attr-defined]
        print(f"| {name} | {r['installer']} | {r['venv_mb']} | {ratio('venv_mb')} | "
              f"{r['install_cold_s']} | {ratio('install_cold_s')} | {r['install_warm_s']} | "
              f"{ratio('install_warm_s')} | {r['ready_s']} | {ratio('ready_s')} | {loaded} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
