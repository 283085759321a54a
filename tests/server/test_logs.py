"""The server's log lines: the access line's direct JSON path writes what the formatter
would, and anything but the plain JSON set-up goes through :mod:`logging`."""

from __future__ import annotations

import datetime
import io
import json
import logging
import logging.config
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_app_agent.server import logs

FIELDS = {"event": "access", "request_id": "a" * 32, "method": "POST",
          "path": "/invocations", "route": "/invocations", "mode": "invoke", "status": 200,
          "error_code": None, "duration_ms": 1.25, "bytes_in": 80, "bytes_out": 300,
          "trace_id": "tr-" + "b" * 32, "user": "ana@example.com"}


@pytest.fixture
def configured() -> Iterator[None]:
    """uvicorn_log_config applied for the test, and the toolkit's loggers put back after."""
    names = ["uvicorn", "uvicorn.error", "uvicorn.access", logs.TOOLKIT_LOGGER,
             logs.SERVER_LOGGER, logs.ACCESS_LOGGER]
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate,
                 logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    try:
        yield
    finally:
        for n, (handlers, propagate, level, disabled) in saved.items():
            lg = logging.getLogger(n)
            lg.handlers[:] = handlers
            lg.propagate, lg.level, lg.disabled = propagate, level, disabled


def _stream_handler(fmt: str) -> tuple[logging.Handler, io.StringIO]:
    logging.config.dictConfig(logs.uvicorn_log_config(fmt, "info"))
    handler = logging.getLogger(logs.SERVER_LOGGER).handlers[0]
    out = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    return handler, out


def test_the_direct_json_line_is_what_the_formatter_writes(
        configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    handler, out = _stream_handler("json")
    assert logs._direct_json_handler() is handler
    monkeypatch.setattr(logs.time, "time", lambda: 1764748862.345)
    logs.access_line(dict(FIELDS))
    direct = out.getvalue()
    assert direct.endswith("\n") and direct.count("\n") == 1

    # the same fields through logging and JsonFormatter, at the same time
    record = logging.LogRecord(logs.ACCESS_LOGGER, logging.INFO, __file__, 1,
                               json.loads(direct)["message"], None, None)
    record.created = 1764748862.345
    setattr(record, logs.FIELDS, dict(FIELDS))
    assert direct == logs.JsonFormatter().format(record) + "\n"
    line = json.loads(direct)
    assert line["time"] == "2025-12-03T08:01:02.345Z"
    assert list(line)[:4] == ["time", "level", "logger", "message"]
    assert line["message"] == (f"POST /invocations 200 1.25ms mode=invoke id={'a' * 32} "
                               f"trace=tr-{'b' * 32} user=ana@example.com")


@pytest.mark.parametrize("setup", ["second handler", "text format", "filter", "level"])
def test_anything_but_the_plain_json_setup_goes_through_logging(
        configured: None, setup: str) -> None:
    handler, out = _stream_handler("text" if setup == "text format" else "json")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    server = logging.getLogger(logs.SERVER_LOGGER)
    if setup == "second handler":  # e.g. the OTLP logs bridge
        server.addHandler(Keep())
    elif setup == "filter":
        handler.addFilter(lambda record: not seen.append(record))
    elif setup == "level":
        handler.setLevel(logging.WARNING)
    assert logs._direct_json_handler() is None
    logs.access_line(dict(FIELDS))
    if setup == "level":
        assert out.getvalue() == "" and not seen
        return
    assert len(seen) == (0 if setup == "text format" else 1)
    assert "POST /invocations 200 1.25ms" in out.getvalue()


def test_without_any_logging_setup_lines_reach_caplog(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=logs.ACCESS_LOGGER):
        logs.access_line(dict(FIELDS))
    [record] = [r for r in caplog.records if r.name == logs.ACCESS_LOGGER]
    assert getattr(record, logs.FIELDS)["request_id"] == "a" * 32


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_iso_time_is_datetimes_millisecond_isoformat(created: float) -> None:
    stamp = datetime.datetime.fromtimestamp(int(created), tz=datetime.UTC)
    millis = int((created - int(created)) * 1000)
    expected = stamp.replace(microsecond=millis * 1000).isoformat(timespec="milliseconds")
    assert logs._iso(created) == expected.replace("+00:00", "Z")
    assert logs._iso(created) == logs._iso(created)  # from the cached second too


def test_a_failing_stream_is_reported_the_way_logging_does(
        configured: None, monkeypatch: pytest.MonkeyPatch) -> None:
    handler, out = _stream_handler("json")
    out.close()  # writing raises ValueError now
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", reported.append)
    logs.access_line(dict(FIELDS))  # no exception reaches the request
    assert [r.name for r in reported] == [logs.ACCESS_LOGGER]
