"""``check_agent``: run the contract's properties with hypothesis and report minimal
counterexamples.

Properties (each is its own hypothesis run, so each failure shrinks to its own minimal
request):

* ``invoke`` — (a) every valid request gets a valid, non-empty ``ResponsesAgentResponse``;
* ``stream`` — (b) every event is a valid ``ResponsesAgentStreamEvent``, the text deltas of
  an item add up to its done item's text, and the stream ends (bounded by a cap and timeout);
* ``consistency`` — (c) deterministic agents only: the reduced stream equals invoke's output;
* ``malformed`` — (d) servers answer malformed bodies with a 4xx and a message, never a 5xx;
  in-process agents reject malformed objects with a ``RequestError``. Broken conversations
  the schema accepts (an unanswered ``function_call``) may also get the agent's own clean
  error (``agent_error`` with a message).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mlflow_app_agent.errors import (
    MissingDependencyError,
    MlflowAppAgentError,
    ValidationFailure,
)
from mlflow_app_agent.testing import checks
from mlflow_app_agent.testing.targets import Target, resolve_target

PROPERTIES: dict[str, str] = {
    "invoke": "invoke returns a valid ResponsesAgentResponse",
    "stream": "stream events are valid, deltas add up to done items, the stream ends",
    "consistency": "the reduced stream equals invoke's output",
    "malformed": "malformed requests get a 4xx with a message, never a 5xx",
}
DEFAULT_MAX_EXAMPLES = 50
T = TypeVar("T")
SIMPLEST_REQUEST = {"input": [{"role": "user", "content": "Hello!"}]}


@dataclasses.dataclass
class PropertyResult:
    name: str
    description: str
    passed: bool
    examples: int
    seconds: float
    problem: str | None = None
    counterexample: Any = None  # the minimal request (dict) or malformed body description
    endpoint: str | None = None

    def format(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        plural = "" if self.examples == 1 else "s"
        line = f"{mark}  {self.name:<12} {self.description} ({self.examples} example{plural}, "
        line += f"{self.seconds:.1f} s)"
        if self.passed:
            return line
        where = f" to {self.endpoint}" if self.endpoint else ""
        return (
            f"{line}\n      minimal counterexample{where}:\n"
            f"{_indent(_render(self.counterexample), 8)}\n"
            f"      what broke:\n{_indent(self.problem or '', 8)}"
        )


@dataclasses.dataclass
class CheckReport:
    target: str
    results: list[PropertyResult]
    skipped: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[PropertyResult]:
        return [r for r in self.results if not r.passed]

    def format(self) -> str:
        lines = [f"Validating {self.target}"]
        lines += [r.format() for r in self.results]
        lines += [f"SKIP  {s}" for s in self.skipped]
        verdict = "OK" if self.ok else f"{len(self.failures)} of {len(self.results)} FAILED"
        lines.append(f"{verdict}: {self.target}")
        return "\n".join(lines)


class _Broken(AssertionError):
    """One example broke a property (hypothesis shrinks on it)."""

    def __init__(self, problems: list[str], example: Any, endpoint: str | None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.example = example
        self.endpoint = endpoint


def check_agent(
    target: Any,
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    deterministic: bool = True,
    properties: Iterable[str] | None = None,
    seed: int | None = None,
    timeout: float | None = None,
    raise_on_failure: bool = True,
    trace: bool = False,
) -> CheckReport:
    """Check ``target`` (an Agent / ResponsesAgent, a model URI or directory, or a server URL)
    against the ResponsesAgent contract; raise ``ValidationFailure`` with the minimal
    counterexamples on failure (or return the failing report if ``raise_on_failure=False``).

    ``deterministic=False`` skips the stream-equals-invoke property (LLM-backed agents).
    Runs are derandomized (repeatable in CI) unless ``seed`` is given. MLflow tracing of an
    in-process agent is paused during the check (hundreds of synthetic requests would flood
    the tracking store) unless ``trace=True``.
    """
    require_testing_extras()
    names = list(properties) if properties is not None else list(PROPERTIES)
    unknown = sorted(set(names) - set(PROPERTIES))
    if unknown:
        raise ValueError(f"unknown properties {unknown}; choose from {sorted(PROPERTIES)}")
    kwargs = {"timeout": timeout} if timeout is not None else {}
    tgt = resolve_target(target, **kwargs)
    try:
        ping = getattr(tgt, "ping", None)
        if ping is not None:
            ping()
        report = CheckReport(tgt.description, [])
        for name in names:
            if name == "consistency" and not deterministic:
                report.skipped.append(f"{name:<12} the agent is declared non-deterministic")
                continue
            result = run_untraced(
                functools.partial(run_property, tgt, name, max_examples=max_examples, seed=seed),
                pause=not trace and not tgt.is_server,
            )
            report.results.append(result)
    finally:
        if tgt is not target:
            tgt.close()
    if raise_on_failure and not report.ok:
        failure = ValidationFailure(report.format())
        failure.report = report  # type: ignore[attr-defined]
        raise failure
    return report


def require_testing_extras() -> None:
    """Validation needs the ``testing`` extra; say so instead of an ImportError later."""
    import importlib.util

    missing = [
        m for m in ("hypothesis", "hypothesis_jsonschema") if not importlib.util.find_spec(m)
    ]
    if missing:
        raise MissingDependencyError(
            f"validation needs {' and '.join(missing)}: pip install 'mlflow-app-agent[testing]'"
        )


def run_untraced(fn: Callable[[], T], *, pause: bool = True) -> T:
    """``fn()`` with MLflow tracing paused: its tracer provider is hidden behind a no-op and
    the same one restored after (MLflow's ``trace_disabled``; ``disable()``/``enable()``
    would rebuild it and create a tracking store in the working directory)."""
    if not pause or "mlflow" not in sys.modules:
        return fn()
    try:
        from mlflow.tracing.provider import trace_disabled
    except ImportError:  # an MLflow without it: traces are written, nothing breaks
        return fn()
    return trace_disabled(fn)()


def run_property(
    target: Target, name: str, *, max_examples: int = DEFAULT_MAX_EXAMPLES, seed: int | None = None
) -> PropertyResult:
    """Run one property with hypothesis and return its result (never raises on failure)."""
    from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st
    from hypothesis.errors import Flaky

    from mlflow_app_agent.testing import malformed, strategies

    body = _PROPERTY_BODIES[name]
    count = [0]
    if name == "malformed":
        cases: Any = (
            malformed.malformed_requests() if target.is_server else malformed.malformed_objects()
        )
    else:
        cases = strategies.responses_requests()

    def prop(case: Any, endpoint: str | None) -> None:
        count[0] += 1
        body(target, case, endpoint)

    test = given(case=cases, endpoint=st.sampled_from(target.endpoints))(prop)
    if name != "malformed":
        test = example(case=SIMPLEST_REQUEST, endpoint=target.endpoints[0])(test)
    test = settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=seed is None,
        database=None,  # nothing written to the user's working directory
        verbosity=Verbosity.quiet,
        report_multiple_bugs=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )(test)
    if seed is not None:
        test = hypothesis_seed(seed)(test)
    start = time.monotonic()
    broken: _Broken | None = None
    try:
        test()
    except _Broken as exc:
        broken = exc
    except Flaky as exc:  # fails, but not again on the replay: still report the first one
        broken = _first_broken(exc)
        if broken is None:
            raise
        broken.problems.append("(flaky: this request did not fail again when replayed)")
    elapsed = time.monotonic() - start
    if broken is None:
        return PropertyResult(name, PROPERTIES[name], True, count[0], elapsed)
    return PropertyResult(
        name, PROPERTIES[name], False, count[0], elapsed,
        problem="\n".join(broken.problems), counterexample=broken.example,
        endpoint=broken.endpoint,
    )  # fmt: skip


def _first_broken(exc: BaseException) -> _Broken | None:
    if isinstance(exc, _Broken):
        return exc
    for sub in getattr(exc, "exceptions", ()):
        found = _first_broken(sub)
        if found is not None:
            return found
    return None


def _call(what: str, fn: Callable[[], Any], case: Any, endpoint: str | None) -> Any:
    try:
        return fn()
    except ValidationFailure as exc:
        raise _Broken([exc.message], case, endpoint) from None
    except Exception as exc:  # the agent's own failure is the finding
        raise _Broken([f"{what} raised {type(exc).__name__}: {exc}"], case, endpoint) from None


def check_invoke(target: Target, request: Any, endpoint: str | None = None) -> None:
    response = _call("invoke", lambda: target.invoke(request, endpoint=endpoint), request, endpoint)
    problems = checks.response_problems(response)
    if problems:
        raise _Broken(problems, request, endpoint)


def check_stream(target: Target, request: Any, endpoint: str | None = None) -> list[Any]:
    result = _call("stream", lambda: target.stream(request, endpoint=endpoint), request, endpoint)
    problems = checks.stream_problems(result.events) if result.ended else []
    if result.problem:
        problems.insert(0, result.problem)
    if problems:
        raise _Broken(problems, request, endpoint)
    return result.events  # type: ignore[no-any-return]


def check_consistency(target: Target, request: Any, endpoint: str | None = None) -> None:
    response = _call("invoke", lambda: target.invoke(request, endpoint=endpoint), request, endpoint)
    if checks.response_problems(response):
        check_invoke(target, request, endpoint)  # re-raise with invoke's own wording
    events = check_stream(target, request, endpoint)
    problems = checks.consistency_problems(response, events)
    if problems:
        raise _Broken(problems, request, endpoint)


def check_malformed(target: Target, case: Any, endpoint: str | None = None) -> None:
    from mlflow_app_agent.testing import malformed

    if target.is_server:
        what = f"a malformed body ({case.kind})"
        shown = {"kind": case.kind, "content_type": case.content_type, "body": case.preview()}
        resp = _call("POST", lambda: target.post_raw(case.body, case.content_type,
                                                     endpoint=endpoint), shown, endpoint)  # fmt: skip
        problems = checks.rejection_problems(
            resp.status, resp.content_type, resp.text,
            must_reject=malformed.must_reject_at(case, endpoint), what=what,
            agent_may_refuse=case.agent_may_refuse,
        )  # fmt: skip
        if problems:
            raise _Broken(problems, shown, endpoint)
        return
    shown = {"kind": case.kind, "request": case.obj}
    try:
        response = target.invoke(case.obj, endpoint=endpoint)
    except ValidationFailure as exc:  # the target's own finding (e.g. a timeout)
        raise _Broken([f"a malformed request ({case.kind}): {exc.message}"], shown,
                      endpoint) from None  # fmt: skip
    except MlflowAppAgentError as exc:
        if 400 <= exc.status_code < 500 and exc.message:
            return
        raise _Broken([f"a malformed request ({case.kind}) raised {type(exc).__name__} "
                       f"(status {exc.status_code}): {exc}"], shown, endpoint) from None  # fmt: skip
    except Exception as exc:
        if case.agent_may_refuse and not case.must_reject and str(exc).strip():
            return  # a broken conversation the agent (its framework, its LLM) refuses cleanly
        if case.must_reject:
            why = f"raised {type(exc).__name__}: {exc} instead of a RequestError"
        else:  # the schema accepts it: the agent itself failed on an unusual request
            why = f"is valid for MLflow's schema, but the agent raised {type(exc).__name__}: {exc}"
        raise _Broken([f"a malformed request ({case.kind}) {why}"], shown, endpoint) from None
    if case.must_reject:
        raise _Broken([f"a malformed request ({case.kind}) was accepted"], shown, endpoint)
    problems = checks.response_problems(response)
    if problems:
        raise _Broken(problems, shown, endpoint)


_PROPERTY_BODIES: dict[str, Callable[[Target, Any, str | None], Any]] = {
    "invoke": check_invoke,
    "stream": check_stream,
    "consistency": check_consistency,
    "malformed": check_malformed,
}


def _render(value: Any) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > 4000:
        text = text[:4000] + f"\n... ({len(text) - 4000} more chars)"
    return text


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in text.splitlines())
