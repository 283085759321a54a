"""What a Databricks Apps deploy waits for: installing the materialized app and starting it.

For two agents, the quickstart's echo agent (logged as a new user would: MLflow infers its
requirements) and the tool-calling template agent (``init --template tool-calling``, logged
as its project logs it, from its pinned ``requirements.txt`` but with full ``mlflow`` in
place of ``mlflow-skinny``, as an environment with full MLflow would record it; its LLM and
workspace are the project's own local fake), three materializations of the same model:

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

    python benchmarks/deploy/bench.py [--agents echo,tool-calling] [--starts 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
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


def echo_model(work: Path) -> Path:
    import mlflow_app_agent

    model = work / "echo-model"
    mlflow_app_agent.save_model(str(ECHO), model)  # requirements inferred by MLflow
    return model


def tool_calling_model(work: Path) -> Path:
    """The template project's agent, saved as its tests log it, against its fake workspace
    (started by :func:`start_fake_workspace`, which points DATABRICKS_HOST at it)."""
    import mlflow_app_agent

    project = work / "tool-project"
    model = work / "tool-model"
    pins = (project / "requirements.txt").read_text().splitlines()
    full = [line.replace("mlflow-skinny==", "mlflow==", 1) for line in pins]
    mlflow_app_agent.save_model(
        str(project / "agent.py"), model, code_paths=[str(project / "agent_tools.py")],
        model_config=str(project / "config.yaml"), pip_requirements=full, git="off")
    return model


def start_fake_workspace(work: Path, stack: contextlib.ExitStack) -> None:
    import importlib.util

    from mlflow_app_agent.templates import scaffold

    project = work / "tool-project"
    scaffold(project, "tool-calling")
    spec = importlib.util.spec_from_file_location(
        "bench_fake_databricks", project / "tests" / "fake_databricks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake = stack.enter_context(module.FakeDatabricks())
    # the app processes inherit these (clean_env keeps DATABRICKS_*), as an App's env would
    os.environ["DATABRICKS_HOST"] = fake.url
    os.environ["DATABRICKS_TOKEN"] = module.APP_TOKEN


def bench_model(label: str, model: Path, work: Path, starts: int) -> dict[str, dict[str, object]]:
    from mlflow_app_agent.apps.build.materialize import BuildOptions, materialize

    variants = {
        "full": BuildOptions(installer="pip", full_mlflow=True),
        "pip": BuildOptions(installer="pip"),
        "uv": BuildOptions(installer="uv"),
    }
    rows: dict[str, dict[str, object]] = {}
    for name, opts in variants.items():
        app = materialize(str(model), work / f"{label}-app-{name}", options=opts)
        cache = work / f"{label}-cache-{name}"
        venv = work / f"{label}-venv-{name}"
        cold = install(app, opts.installer, venv, cache)
        warm = install(app, opts.installer, venv, cache)
        ready = statistics.median(time_to_ready(app, venv) for _ in range(starts))
        rows[name] = {"installer": opts.installer, "venv_mb": round(du_mb(venv), 1),
                      "install_cold_s": round(cold, 1), "install_warm_s": round(warm, 1),
                      "ready_s": round(ready, 2), "imports": imported(venv, app)}
        print(f"{label} {name}: {rows[name]}", file=sys.stderr, flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return rows


def print_table(label: str, model: Path, rows: dict[str, dict[str, object]]) -> None:
    base = rows["full"]
    print(f"\n{label} (requirements logged: {(model / 'requirements.txt').read_text().split()})\n")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", default="echo,tool-calling",
                        help="comma-separated: echo, tool-calling")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    unknown = set(agents) - {"echo", "tool-calling"}
    if unknown:
        parser.error(f"unknown agent(s): {', '.join(sorted(unknown))}")

    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    results: dict[str, dict[str, dict[str, object]]] = {}
    with contextlib.ExitStack() as stack:
        models = {}
        if "tool-calling" in agents:
            start_fake_workspace(work, stack)
        for label in agents:
            models[label] = echo_model(work) if label == "echo" else tool_calling_model(work)
            results[label] = bench_model(label, models[label], work, args.starts)
    print(f"\nmachine: {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}")
    for label in agents:
        print_table(label, models[label], results[label])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
