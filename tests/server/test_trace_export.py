"""The out-of-process trace writer against real sqlite stores: it writes what MLflow's own
in-process export writes, flush means written, a dead or stalled writer never fails or
blocks the caller."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlflow_app_agent.server import trace_export
from mlflow_app_agent.server.trace_counts import TraceCounts


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``store(name)`` points MLflow (env and client) at a fresh sqlite file and warms its
    tracer provider; the session's tracking URI and MLflow's own queue come back after."""
    import mlflow
    from mlflow.tracing.provider import get_bridged_tracer_provider

    before = mlflow.get_tracking_uri()

    def use(name: str) -> str:
        uri = f"sqlite:///{tmp_path / name}.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        get_bridged_tracer_provider()
        return uri

    yield use
    _install("thread")
    mlflow.set_tracking_uri(before)


_HOOK = trace_export.ExportHook(TraceCounts())


def _install(mode: str) -> str:
    """What a server's tracer does at warm-up (one hook per app; here one per module)."""
    return _HOOK.install(mode)


def _current_queue() -> Any:
    from mlflow_app_agent import _mlflow_compat as compat

    found = compat.export_queue(compat.current_exporter())
    return found if isinstance(found, trace_export.ProcessExportQueue) else None


def _make_traces(count: int, prefix: str, padding: int = 0) -> None:
    import mlflow

    for i in range(count):
        with mlflow.start_span(name="request", span_type="AGENT") as root:
            root.set_inputs({"input": [{"role": "user", "content": f"hello {i}" + "." * padding}]})
            mlflow.update_current_trace(tags={"n": str(i)}, client_request_id=f"{prefix}-{i}",
                                        user="ada@example.com")
            with mlflow.start_span(name="tool", span_type="TOOL") as tool:
                tool.set_inputs({"q": i})
                tool.set_outputs({"a": i * 2})
            root.set_outputs({"output": [{"type": "message", "text": f"bye {i}"}]})


def _written(prefix: str) -> dict[str, Any]:
    import mlflow

    mlflow.flush_trace_async_logging()
    traces = mlflow.search_traces(return_type="list", max_results=1000)
    return {t.info.client_request_id: t for t in traces
            if (t.info.client_request_id or "").startswith(prefix)}


def _shape(trace: Any) -> dict[str, Any]:
    """What a reader of the trace sees, without ids and timings."""
    info = trace.info
    return {
        "state": str(info.state),
        "tags": {k: v for k, v in info.tags.items() if not k.startswith("mlflow.artifact")},
        "user": info.trace_metadata.get("mlflow.trace.user"),
        "metadata_keys": sorted(info.trace_metadata),
        "spans": [(s.name, s.span_type, s.inputs, s.outputs, str(s.status.status_code),
                   bool(s.parent_id)) for s in trace.data.spans],
    }


def test_auto_picks_a_process_only_for_local_stores() -> None:
    assert trace_export.resolve_mode("auto", "sqlite:////tmp/m.db") == "process"
    assert trace_export.resolve_mode("auto", "file:///tmp/mlruns") == "process"
    assert trace_export.resolve_mode("auto", "/tmp/mlruns") == "process"
    assert trace_export.resolve_mode("auto", "http://127.0.0.1:5000") == "thread"
    assert trace_export.resolve_mode("auto", "databricks") == "thread"
    assert trace_export.resolve_mode("auto", "databricks://prod") == "thread"
    assert trace_export.resolve_mode("auto", "mlruns") == "process"
    assert trace_export.resolve_mode("auto", "C:\\runs\\mlruns") == "process"
    assert trace_export.resolve_mode("thread", "sqlite:///m.db") == "thread"
    assert trace_export.resolve_mode("process", "databricks") == "process"


def test_writer_process_writes_what_mlflow_writes_in_process(store: Any) -> None:
    shapes = {}
    for mode in ("thread", "process"):
        store(mode)
        assert _install(mode) == mode
        assert (_current_queue() is not None) == (mode == "process")
        _make_traces(5, mode)
        written = _written(mode)  # flush returns only once the writer wrote everything
        assert sorted(written) == [f"{mode}-{i}" for i in range(5)]
        shapes[mode] = {k.split("-")[1]: _shape(t) for k, t in written.items()}
    assert shapes["process"] == shapes["thread"]
    assert shapes["process"]["3"]["spans"][1][3] == {"a": 6}


def test_a_tracer_shut_down_before_its_warm_up_ends_starts_no_writer(store: Any) -> None:
    """An in-process app stopped while its warm-up thread still imports MLflow (TestClient
    closed at once): the warm-up must not start a writer process that nothing will stop."""
    from mlflow_app_agent.server.tracing import Tracer

    store("stopped-early")
    tracer = Tracer(enabled=True, export="process")
    tracer.shutdown(1.0)
    tracer.warm_up()
    assert tracer.writer() is None and _current_queue() is None


def test_install_is_idempotent_and_thread_mode_restores_mlflows_queue(store: Any) -> None:
    store("idem")
    assert _install("auto") == "process"
    writer = _current_queue()
    assert writer is not None and writer.alive
    assert _install("process") == "process"
    assert _current_queue() is writer
    assert _install("thread") == "thread"
    assert _current_queue() is None and not writer.alive
    _make_traces(2, "restored")
    assert len(_written("restored")) == 2


def test_a_dead_writer_falls_back_to_in_process_export(store: Any) -> None:
    store("dead")
    _install("process")
    writer = _current_queue()
    assert writer is not None and writer._proc is not None
    writer._proc.kill()
    deadline = time.monotonic() + 10
    while writer.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not writer.alive
    _make_traces(3, "fallback")
    assert len(_written("fallback")) == 3
    assert writer.fallen_back >= 3


def test_a_stalled_writer_never_blocks_the_caller(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE", "4")
    store("stalled")
    _install("process")
    writer = _current_queue()
    assert writer is not None and writer._proc is not None
    os.kill(writer._proc.pid, signal.SIGSTOP)  # the pipe fills, then the bounded queue
    try:
        # ~9 MB: more than the 1 MiB pipe; a blocked put would hang (pytest-timeout fails it)
        _make_traces(150, "stalled", padding=30_000)
    finally:
        os.kill(writer._proc.pid, signal.SIGCONT)
    assert writer.dropped > 0
    written = _written("stalled")
    assert 1 <= len(written) < 150
    assert writer.alive


def test_flush_with_no_writer_running_is_a_no_op(store: Any) -> None:
    from mlflow.tracing.export.async_export_queue import AsyncTraceExportQueue
    from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter

    uri = store("idle")
    counts = TraceCounts()
    queue = trace_export.ProcessExportQueue(
        uri, fallback=trace_export.CountingQueue(AsyncTraceExportQueue(), counts,
                                                 MlflowV3SpanExporter),
        exporter_cls=MlflowV3SpanExporter, counts=counts)
    assert not queue.alive and not queue.is_active()
    queue.flush(timeout=1)
    queue.flush(terminate=True, timeout=1)


def test_traces_that_link_prompts_are_written_in_process_with_their_links(
    store: Any, unique_name: str
) -> None:
    import mlflow

    store("prompts")
    _install("process")
    writer = _current_queue()
    assert writer is not None
    prompt = mlflow.genai.register_prompt(name=unique_name.replace("-", "_"),
                                          template="Answer {{question}}")
    with mlflow.start_span(name="request") as span:
        mlflow.update_current_trace(client_request_id="with-prompt")
        mlflow.genai.load_prompt(f"prompts:/{prompt.name}/{prompt.version}")
        span.set_outputs({"ok": True})
    written = _written("with-prompt")
    assert list(written) == ["with-prompt"]
    assert writer.fallen_back >= 1  # prompt links need the in-process client
    linked = written["with-prompt"].info.tags.get("mlflow.linkedPrompts", "")
    assert prompt.name in linked


def test_thread_mode_writes_a_dropped_trace_nowhere(store: Any) -> None:
    """A store that logs spans creates a trace from its spans alone: a trace counted as
    dropped at shutdown must not have had its spans written either."""
    import threading

    from mlflow.tracing.export.async_export_queue import Task

    from mlflow_app_agent import _mlflow_compat as compat

    store("dropped")
    assert _install("thread") == "thread"
    exporter = compat.current_exporter()
    counting = trace_export.CountingQueue(compat.new_thread_queue(max_workers=1),
                                          TraceCounts(), type(exporter))
    compat.set_export_queue(exporter, counting)  # the fixture's _install puts one back
    release = threading.Event()
    counting.inner.put(Task(handler=release.wait, args=(30,), error_msg="blocked"))
    _make_traces(4, "dropped")  # queued behind the blocked worker: spans and trace tasks
    compat.flush_span_processor(30)  # its batch processor hands spans over on its thread
    assert counting.close(grace=0) == 4
    release.set()
    counting.inner.flush(terminate=False)
    import mlflow

    # not only by request id: a trace made from spans alone has none
    assert mlflow.search_traces(return_type="list") == []
