"""A few hundred fuzz cases in CI (the ≥ 10,000-case run is benchmarks/fuzz/run.py)."""

from __future__ import annotations

import pytest

from mlflow_app_agent.testing.fuzz import fuzz_server

from .servers import naive_app, serve

pytestmark = pytest.mark.e2e


def test_our_server_gives_no_5xx_under_fuzzing(echo_server_url: str) -> None:
    report = fuzz_server(
        echo_server_url, schemathesis_cases=30, malformed_cases=150, valid_cases=30
    )
    summary = report.to_dict()
    assert report.requests >= 300
    assert report.server_errors == 0, summary
    assert report.ok, summary
    sources = {s.source for s in report.sources}
    assert "schemathesis negative POST /invocations" in sources
    assert "schemathesis positive GET /agent/info" in sources


def test_fuzzing_finds_the_naive_servers_500s(echo_agent) -> None:  # type: ignore[no-untyped-def]
    with serve(naive_app(echo_agent)) as url:
        report = fuzz_server(url, schemathesis_cases=0, malformed_cases=60, valid_cases=10)
    assert report.server_errors > 0 and not report.ok
    malformed = report.sources[0]
    assert any("got 500 (a server error)" in f for f in malformed.failures)
