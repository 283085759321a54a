"""Runtime: how a failed load is reported in the server log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mlflow_app_agent.server import create_app


def _load_failure_records(location: str,
                          caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    caplog.set_level(logging.INFO, logger="mlflow_app_agent.server")
    app = create_app(location, tracing=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        for _ in range(200):
            if client.get("/ready").json().get("error", {}).get("code") == "model_load_error":
                break
    return [r for r in caplog.records if "failed" in r.getMessage()]


def test_an_expected_load_error_is_one_line(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    # A typo in a location is not a bug: the reason, without a traceback.
    records = _load_failure_records(str(tmp_path / "missing.py"), caplog)
    assert len(records) == 1
    assert "missing.py" in records[0].getMessage()
    assert "does not exist" in records[0].getMessage()
    assert not records[0].exc_info


def test_agent_code_that_raises_keeps_its_traceback(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise ImportError('no module named llm_sdk')\n")
    records = _load_failure_records(str(broken), caplog)
    assert len(records) == 1
    assert "no module named llm_sdk" in records[0].getMessage()
    # the user's code: where it raised matters (formatted into the message, scrubbed)
    assert 'broken.py", line 1' in records[0].getMessage()
    assert "Traceback (most recent call last)" in records[0].getMessage()
