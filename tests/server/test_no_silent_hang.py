"""No silent hang (issue 14 items 7, 8) and item 11, against real uvicorn processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_a_malformed_model_uri_fails_before_binding(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "mlflow_app_agent.serve", "model:/x/1",
                           "--port", "1"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown scheme 'model:'" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unreachable_registry_is_reported_and_bounded(serve: Any) -> None:
    server = serve("models:/x/3", "--registry-timeout", "1", "--registry-retries", "2",
                   env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"}, wait=False)
    deadline = time.monotonic() + 90
    seen = []
    while time.monotonic() < deadline:
        try:
            body = httpx.get(server.url + "/ready", timeout=2).json()["error"]
            seen.append(body["message"])
            if body["code"] == "model_load_error":
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    assert seen and seen[-1].startswith("the agent failed to load"), seen
    assert any("http://127.0.0.1:1" in m for m in seen) or "127.0.0.1:1" in seen[-1]
    log = server.stop()
    assert "fetching models:/x/3 from http://127.0.0.1:1" in log


def test_a_body_shorter_than_its_content_length_gets_a_408(serve: Any,
                                                           agents_path: Path) -> None:
    server = serve(f"{agents_path}:echo", "--body-read-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: 1000\r\n\r\n{\"input\": [")
        reply = ""
        while not reply.rstrip().endswith("}}"):
            chunk = sock.recv(65536).decode()
            if not chunk:
                break
            reply += chunk
    assert reply.startswith("HTTP/1.1 408")
    assert '"code": "request_timeout"' in reply and "application/json" in reply


def test_responses_input_of_the_wrong_type_names_both_accepted_forms(
    serve: Any, agents_path: Path
) -> None:
    server = serve(f"{agents_path}:echo")
    resp = httpx.post(server.url + "/responses", json={"input": 5}, timeout=30)
    assert resp.status_code == 422
    assert "must be a string or a list" in resp.json()["error"]["message"]
