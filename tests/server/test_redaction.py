"""No secret in logs, traces or error bodies (issue 14 items 5-6): a real uvicorn process,
a real sqlite trace store, an agent whose exceptions carry the caller's token, an app
secret and a Databricks-token-shaped string."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_app_agent.server.redact import (
    MARK,
    Redactor,
    app_secrets,
    credential_shapes,
    encodable,
)
from tests.server.test_trace_accounting import _stop, _stored, _traced_server

TOKEN = "eyJraWQiOiJ1c2VyLXRva2VuIn0.caller-obo-token-value-123"
APP_KEY = "app-secret-serving-key-0987654321"


def _everything_written(log: str, db: Path) -> str:
    traces = [t for ts in _stored(db).values() for t in ts]
    return log + "\n".join(t.to_json() for t in traces)


@pytest.mark.e2e
@pytest.mark.parametrize("detail", ["message", "none"])
def test_secrets_never_reach_the_log_the_trace_or_the_caller(
    serve: Any, agents_path: Path, tmp_path: Path, detail: str
) -> None:
    db = tmp_path / "r.db"
    server = _traced_server(serve, agents_path, db, "--error-detail", detail, agent="spill",
                            SERVING_API_KEY=APP_KEY)
    bodies = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for i, (what, stream) in enumerate([(w, s) for w in ("token", "env", "shape")
                                            for s in (False, True)]):
            resp = http.post("/invocations", headers={
                "X-Forwarded-Access-Token": TOKEN, "X-Request-Id": f"r{i}",
                "Authorization": f"Bearer {TOKEN}",
            }, json={"input": [{"role": "user", "content": what}], "stream": stream})
            bodies.append(resp.text)
            if not stream:
                assert resp.status_code == 500
                message = resp.json()["error"]["message"]
                if detail == "none":
                    assert message == ("the agent failed; the server log and trace of request "
                                       f"r{i} have the details")
                else:
                    assert "upstream refused" in message and MARK in message
    log = _stop(server)
    written = _everything_written(log, db) + "\n".join(bodies)
    for secret in (TOKEN, APP_KEY, "dapiSECRET123"):
        assert secret not in written
    # the detail is still there, scrubbed, for operators
    assert log.count("upstream refused") >= 6 and "Traceback" in log
    traces = [t for ts in _stored(db).values() for t in ts]
    assert len(traces) == 6
    assert all("upstream refused" in json.dumps(t.data.spans[0].attributes) for t in traces)


def test_credential_shapes_come_from_a_maintained_pattern_set() -> None:
    redact = Redactor()
    samples = {
        "github": "ghp_" + "a1B2" * 9,
        "aws": "AKIAIOSFODNN7EXAMPLE",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "slack": "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx",
        "databricks": "dapi0123456789abcdef0123456789abcdef-2",
        "bearer": "Bearer abc.def-ghi_jkl",
    }
    for kind, secret in samples.items():
        assert secret not in redact(f"call failed ({secret}) retry"), kind
    plain = "the agent raised RuntimeError: database unreachable at db.internal:5432"
    assert redact(plain) == plain


@given(st.text("0123456789abcdef-", max_size=160))
def test_no_credential_shape_matches_a_lowercase_hex_id(text: str) -> None:
    # why Redactor.field may skip the shape scan for ids (the access log's hot path)
    assert not any(shape.search(text) for shape in credential_shapes())


def test_field_scrubs_like_the_redactor() -> None:
    redact = Redactor(["app-secret-value-42"])
    for text in ("ghp_" + "a1B2" * 9, "ada@example.com", "/x/dapi0123456789abcdef0123456789ab",
                 "uses app-secret-value-42", "3f2a-9c", "Bearer tok.en-12345678", "a" * 400):
        assert redact.field(text, ("tok.en-12345678",)) == redact(text, ("tok.en-12345678",))
        assert redact.field(text) == redact(text)  # cached the second time


def test_app_secrets_are_named_secrets_and_value_from_env(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        "command: [python, -m, mlflow_app_agent.serve]\n"
        "env:\n  - name: LLM_CREDS\n    valueFrom: llm-secret\n"
        "  - name: MODE\n    value: prod\n")
    env = {"LLM_CREDS": "s3cr3t-from-a-resource", "DATABRICKS_TOKEN": "dapi-ish-token-value",
           "MODE": "production", "PORT_TOKEN_COUNT": "12345678", "HOME": "/root"}
    found = app_secrets(env, [tmp_path])
    assert set(found) == {"s3cr3t-from-a-resource", "dapi-ish-token-value"}


def test_lone_surrogates_become_replacement_characters() -> None:
    assert encodable("x\ud800y") == "x\ufffdy"
    assert encodable("ok \U0001f600") == "ok \U0001f600"


@pytest.mark.parametrize("location, kept, gone", [
    ("models:/it's a model/3", "models:/it's a model/3", None),
    ("/srv/app/model@v2", "/srv/app/model@v2", None),
    ("https://ada:s3cretpass@host.example/m?sig=abcd1234", "https://[REDACTED]@host.example/m?",
     "s3cretpass"),
    ("runs:/0123456789abcdef/model", "runs:/0123456789abcdef/model", None),
    ("/tmp/dapi0123456789abcdef0123456789abcdef/model", "/tmp/[REDACTED]/model", "dapi0123"),
    ("/models/the-app-secret-value/x", "/models/[REDACTED]/x", "the-app-secret-value"),
])
def test_a_location_loses_its_credentials_and_keeps_the_rest(
    location: str, kept: str, gone: str | None
) -> None:
    redacted = Redactor(["the-app-secret-value"]).location(location)
    assert redacted.startswith(kept)
    assert gone is None or gone not in redacted


def test_starting_the_server_loads_no_credential_plugins(tmp_path: Path) -> None:
    """The start line redacts the location without detect-secrets' plugins (~70 ms of
    imports before /ready); the full set still loads for the first error to scrub."""
    script = (
        "import asyncio, sys\n"
        "from mlflow_app_agent.server import create_app\n"
        "app = create_app('tests/server/agents.py:echo')\n"
        "async def main():\n"
        "    async with app.router.lifespan_context(app):\n"
        "        assert 'detect_secrets' not in sys.modules, 'loaded at start'\n"
        "        app.state.runtime.errors.redactor('token ghp_' + 'a' * 36)\n"
        "        assert 'detect_secrets' in sys.modules\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=120,
                          env={**os.environ,
                               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"})
    assert done.returncode == 0, done.stderr[-2000:]
