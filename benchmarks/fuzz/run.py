"""Fuzz the bundled agent server and write RESULTS.md / results.json next to this file.

    python benchmarks/fuzz/run.py                      # ≥ 10,000 cases, starts its own server
    python benchmarks/fuzz/run.py --url http://127.0.0.1:8000 --scale 0.1

By default it serves the quickstart echo agent (``examples/echo/agent.py``) with
``mlflow-app-agent serve`` in a subprocess on 127.0.0.1, with its default settings (tracing on,
into a temporary sqlite store), and sends: schemathesis cases from the server's OpenAPI
document (positive and negative, every operation), the malformed-body strategy, and valid
requests (invoke and stream). The contract: zero 5xx, zero tracebacks, every 4xx with
``{"error": {"message": ...}}``, no malformed body accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@contextlib.contextmanager
def served_echo() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow_app_agent.cli", "serve",
             str(ROOT / "examples" / "echo" / "agent.py"),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url + "/ready", timeout=1).status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        "server did not start:\n" + (Path(tmp) / "server.log").read_text()
                    )
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            server_log = (Path(tmp) / "server.log").read_text()
            if "Traceback" in server_log:
                print("server log has tracebacks:\n" + server_log[-3000:], file=sys.stderr)


def render(report: dict, command: str, seconds: float) -> str:
    import mlflow
    import schemathesis

    from mlflow_app_agent._version import __version__

    lines = [
        "# Server fuzzing results",
        "",
        f"Command: `{command}`",
        "",
        f"Target: the bundled server (`mlflow-app-agent serve examples/echo/agent.py`, default "
        f"settings, tracing on) at {report['url']}.  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} cores (shared), Python "
        f"{platform.python_version()}; mlflow-app-agent {__version__}, MLflow {mlflow.__version__}, "
        f"schemathesis {schemathesis.__version__}.  ",
        f"Wall time: {seconds:.0f} s. Generation is derandomized: a re-run sends the same cases.",
        "",
        f"**{report['requests']:,} requests, {report['server_errors']} × 5xx, contract "
        f"{'held' if report['ok'] else 'BROKEN'}.**",
        "",
        "| source | requests | 2xx | 4xx | 5xx | transport errors | contract failures |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in report["sources"]:
        st = {int(k): v for k, v in s["statuses"].items()}
        ok2 = sum(v for k, v in st.items() if 200 <= k < 300)
        c4 = sum(v for k, v in st.items() if 400 <= k < 500)
        c5 = sum(v for k, v in st.items() if k >= 500)
        lines.append(
            f"| {s['source']} | {s['requests']:,} | {ok2:,} | {c4:,} | {c5} | "
            f"{s['transport_errors']} | {len(s['failures'])} |"
        )
    lines += ["", "Statuses per source:", ""]
    for s in report["sources"]:
        codes = ", ".join(f"{k}: {v:,}" for k, v in s["statuses"].items())
        lines.append(f"- {s['source']}: {codes}")
    failures = [f for s in report["sources"] for f in s["failures"]]
    if failures:
        lines += ["", "First contract failures:", ""]
        lines += [f"- `{f[:300]}`" for f in failures[:10]]
    lines += [
        "",
        "Notes:",
        "",
        '- schemathesis "positive" cases conform to the server\'s OpenAPI document, which '
        "embeds MLflow's `ResponsesAgentRequest` JSON schema; MLflow's validators add rules the "
        "JSON schema does not carry (allowed roles, content shapes per item type), so most "
        "generated cases are still invalid and correctly get 422. Since the document carries "
        "the real schema, this source found 10 x 500 (values MLflow's validators raised "
        "TypeError on, now 422s naming the field).",
        "- The malformed source's 2xx answers are bodies that are in fact valid (e.g. "
        "`input: []`, a non-JSON content type on a JSON body, `NaN`); bodies that Python's "
        "parser or MLflow's schema refuse must not get a 2xx, and none did if the contract held.",
        "- Raw numbers: `results.json`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="fuzz this running server instead of starting one")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case count")
    parser.add_argument("--schemathesis-cases", type=int, default=1500,
                        help="per agent operation and generation mode")  # fmt: skip
    parser.add_argument("--malformed-cases", type=int, default=3000)
    parser.add_argument("--valid-cases", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="print, don't write RESULTS.md")
    args = parser.parse_args()
    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the server subprocess is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from mlflow_app_agent.testing.fuzz import fuzz_server

    def scaled(n: int) -> int:
        return max(1, int(n * args.scale))

    command = "python benchmarks/fuzz/run.py " + shlex.join(sys.argv[1:])
    start = time.monotonic()
    with contextlib.nullcontext(args.url) if args.url else served_echo() as url:
        report = fuzz_server(
            url,
            schemathesis_cases=scaled(args.schemathesis_cases),
            malformed_cases=scaled(args.malformed_cases),
            valid_cases=scaled(args.valid_cases),
            progress=lambda msg: print(msg, file=sys.stderr, flush=True),
        ).to_dict()
    seconds = time.monotonic() - start
    text = render(report, command.strip(), seconds)
    print(text)
    if not args.no_write:
        (HERE / "results.json").write_text(json.dumps(report, indent=2) + "\n")
        (HERE / "RESULTS.md").write_text(text)
    raise SystemExit(0 if report["ok"] and report["server_errors"] == 0 else 1)


if __name__ == "__main__":
    main()
