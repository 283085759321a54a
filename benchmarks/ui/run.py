"""The chat page measured in a real browser: page weight and time to first token.

Starts ``serve tests/server/ui/agents.py:chat`` (tracing on, sqlite, as the page's requests
always are) on a free loopback port, opens the page in Debian's headless Chromium (driven
by Playwright) and reads:

* page weight: the HTML plus every asset, uncompressed (``decodedBodySize``) and as sent
  (``transferSize``) from the browser's Resource Timing entries, on a cold and a warm load;
* time to first token: from the page's ``send`` mark (the Enter key handler) to the
  animation frame after the first text delta was rendered (``first-token`` mark), over
  ``--messages`` messages in one conversation.

    python benchmarks/ui/run.py [--messages 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "tests" / "server" / "ui" / "agents.py"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

_WEIGHT = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const all = [nav, ...res];
  return {files: all.length,
          decoded: all.reduce((n, e) => n + e.decodedBodySize, 0),
          transferred: all.reduce((n, e) => n + e.transferSize, 0),
          dom_content_loaded_ms: nav.domContentLoadedEventEnd,
          names: res.map(e => e.name.split('/').pop())};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_js(page: Any, expression: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(f"() => ({expression})")
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(expression)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="ui-bench-"))
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "MLFLOW_APP_AGENT_TRACING": "true", "CHAT_DELAY": "0.005"}
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow_app_agent.serve", f"{AGENT}:chat",
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("server did not start: " + (tmp / "server.log").read_text())
            time.sleep(0.1)
        # the first request waits for the background warm-up (MLflow import, trace writer):
        # measured separately by `first_request_before_warm_up` would be start-up, not UI
        while httpx.get(url + "agent/info", timeout=5).json()["tracing"]["export"] == "auto":
            time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(
                extra_http_headers={"X-Forwarded-Email": "bench@example.com"})
            page = context.new_page()
            page.goto(url)
            wait_js(page, "window.__chat !== undefined")
            cold = page.evaluate(_WEIGHT)
            page.reload()
            wait_js(page, "window.__chat !== undefined")
            warm = page.evaluate(_WEIGHT)
            ttft: list[float] = []
            for i in range(opts.messages):
                page.fill("#prompt", f"message {i}")
                page.keyboard.press("Enter")
                wait_js(page, f"document.querySelectorAll('.turn.agent.done').length > {i}")
                marks = page.evaluate("window.__chat.marks")
                send = [m["t"] for m in marks if m["name"] == "send"][-1]
                first = [m["t"] for m in marks if m["name"] == "first-token"][-1]
                ttft.append(first - send)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ordered = sorted(ttft)
    result = {
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
        "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True,
                                   text=True).stdout.strip(),
        "page_weight_cold": cold, "page_weight_warm": warm,
        "ttft_ms": {"n": len(ttft), "median": round(statistics.median(ttft), 1),
                    "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
                    "min": round(ordered[0], 1), "max": round(ordered[-1], 1),
                    "first": round(ttft[0], 1)},
    }
    print(json.dumps(result, indent=2))
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
