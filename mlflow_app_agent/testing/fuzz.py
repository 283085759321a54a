"""Server fuzzing: many requests, counted by answer; the contract is zero 5xx.

Three sources, each driven by hypothesis (derandomized, so a run is repeatable):

* ``schemathesis`` — cases generated from the server's own OpenAPI document, both
  schema-conforming ("positive") and schema-violating ("negative"), for every operation;
* ``malformed`` — :func:`~mlflow_app_agent.testing.malformed.malformed_requests` (bad JSON,
  wrong types, unknown roles, huge strings, deep nesting, wrong content types);
* ``valid`` — :func:`~mlflow_app_agent.testing.strategies.responses_requests`, half of them
  with ``"stream": true``.

Every answer is checked against the error contract: 5xx or a traceback in the body is a
failure; a 4xx must carry ``{"error": {"message": ...}}``; a malformed body that must be
rejected must not get a 2xx.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from mlflow_app_agent.testing import checks

AGENT_PATHS = ("/invocations", "/responses")


@dataclasses.dataclass
class FuzzStats:
    """Counts for one source: requests sent, answers by status, contract failures."""

    source: str
    requests: int = 0
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    transport_errors: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def record(self, status: int | None, problems: list[str], what: str) -> None:
        self.requests += 1
        if status is None:
            self.transport_errors += 1
        else:
            self.statuses[status] += 1
        if problems and len(self.failures) < 20:
            self.failures.append(f"{what}: {'; '.join(problems)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors": self.server_errors,
            "transport_errors": self.transport_errors,
            "failures": self.failures,
            "seconds": round(self.seconds, 1),
        }


@dataclasses.dataclass
class FuzzReport:
    url: str
    sources: list[FuzzStats]

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.sources)

    @property
    def server_errors(self) -> int:
        return sum(s.server_errors for s in self.sources)

    @property
    def ok(self) -> bool:
        return all(not s.failures and not s.transport_errors for s in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.requests,
            "server_errors": self.server_errors,
            "ok": self.ok,
            "sources": [s.to_dict() for s in self.sources],
        }


def fuzz_server(
    url: str,
    *,
    schemathesis_cases: int = 1_000,
    malformed_cases: int = 1_000,
    valid_cases: int = 500,
    timeout: float = 30.0,
    progress: Callable[[str], None] | None = None,
) -> FuzzReport:
    """Fuzz the agent server at ``url``; ``*_cases`` are per operation / endpoint."""
    import httpx

    url = url.rstrip("/")
    say = progress or (lambda _msg: None)
    sources: list[FuzzStats] = []
    with httpx.Client(base_url=url, timeout=timeout) as client:
        if schemathesis_cases:
            sources += _schemathesis(url, schemathesis_cases, timeout, say)
        if malformed_cases:
            sources.append(_malformed(client, malformed_cases, say))
        if valid_cases:
            sources.append(_valid(client, valid_cases, say))
    return FuzzReport(url, sources)


def _run(stats: FuzzStats, strategy: Any, n: int, body: Callable[[Any], None]) -> None:
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings

    @settings(
        max_examples=n, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
        phases=[Phase.generate],  # counting answers, not shrinking: failures are listed
    )  # fmt: skip
    @given(strategy)
    def run(case: Any) -> None:
        body(case)

    start = time.monotonic()
    run()
    stats.seconds += time.monotonic() - start


def _post(client: Any, path: str, **kwargs: Any) -> tuple[int | None, str, str]:
    import httpx

    try:
        resp = client.post(path, **kwargs)
    except httpx.HTTPError as exc:
        return None, "", f"{type(exc).__name__}: {exc}"
    return resp.status_code, resp.headers.get("content-type", ""), resp.text


def _schemathesis(url: str, n: int, timeout: float, say: Callable[[str], None]) -> list[FuzzStats]:
    try:
        import schemathesis
        from schemathesis import GenerationMode
    except ImportError:  # a dev dependency; the other sources still run
        say("schemathesis is not installed: skipping the OpenAPI-driven cases")
        return []
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    out = []
    for result in schema.get_all_operations():
        op = result.ok()  # type: ignore[union-attr]
        agent_route = op.path in AGENT_PATHS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if not agent_route and mode is GenerationMode.NEGATIVE:
                continue  # GET routes without parameters have no negative space
            stats = FuzzStats(f"schemathesis {mode.value} {op.method.upper()} {op.path}")
            say(f"{stats.source}: up to {n if agent_route else 20} cases")

            def call(case: Any, stats: FuzzStats = stats) -> None:
                try:
                    resp = case.call(base_url=url, timeout=timeout)
                except Exception as exc:  # transport failure: the server dropped us
                    stats.record(None, [f"{type(exc).__name__}: {exc}"], _show(case.body))
                    return
                problems = _contract(resp.status_code, resp.text)
                stats.record(resp.status_code, problems, f"{case.method} {case.path} "
                             f"{_show(case.body)}")  # fmt: skip

            _run(stats, op.as_strategy(generation_mode=mode), n if agent_route else 20, call)
            out.append(stats)
    return out


def _contract(status: int, text: str) -> list[str]:
    """The error contract alone (no must-reject knowledge): no 5xx, no traceback, 4xx body."""
    if 200 <= status < 300:
        return [] if not any(m in text for m in checks.TRACEBACK_MARKERS) else ["traceback"]
    return checks.rejection_problems(status, "", text, must_reject=False, what="request")


def _malformed(client: Any, n: int, say: Callable[[str], None]) -> FuzzStats:
    from hypothesis import strategies as st

    from mlflow_app_agent.testing.malformed import malformed_requests, must_reject_at

    stats = FuzzStats("malformed bodies (mlflow_app_agent.testing)")
    say(f"{stats.source}: {n} cases")

    def call(args: Any) -> None:
        case, path = args
        headers = {"content-type": case.content_type} if case.content_type else {}
        status, ctype, text = _post(client, path, content=case.body, headers=headers)
        what = f"POST {path} {case.kind} {case.preview(120)}"
        if status is None:
            stats.record(None, [text], what)
            return
        problems = checks.rejection_problems(
            status, ctype, text, must_reject=must_reject_at(case, path), what=case.kind
        )
        stats.record(status, problems, what)

    _run(stats, st.tuples(malformed_requests(), st.sampled_from(AGENT_PATHS)), n, call)
    return stats


def _valid(client: Any, n: int, say: Callable[[str], None]) -> FuzzStats:
    from hypothesis import strategies as st

    from mlflow_app_agent.testing.strategies import responses_requests

    stats = FuzzStats("valid requests, invoke and stream")
    say(f"{stats.source}: {n} cases")

    def call(args: Any) -> None:
        request, path, stream = args
        body = {**request, "stream": True} if stream else request
        status, ctype, text = _post(client, path, json=body)
        what = f"POST {path} {_show(body)}"
        if status is None:
            stats.record(None, [text], what)
            return
        problems = [] if status == 200 else [f"got {status}: {text[:200]}"]
        if status == 200 and not stream:
            problems += checks.response_problems(json.loads(text))
        if status == 200 and stream and "data: [DONE]" not in text:
            problems.append("stream without a final 'data: [DONE]'")
        stats.record(status, problems, what)

    strategy = st.tuples(responses_requests(), st.sampled_from(AGENT_PATHS), st.booleans())
    _run(stats, strategy, n, call)
    return stats


def _show(body: Any, limit: int = 160) -> str:
    try:
        text = body.decode("utf-8", "backslashreplace") if isinstance(body, bytes) else (
            json.dumps(body, default=repr)
        )  # fmt: skip
    except (TypeError, ValueError):
        text = repr(body)
    return text if len(text) <= limit else text[:limit] + "..."
