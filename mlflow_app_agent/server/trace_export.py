"""Where finished traces go, and the count of what happened to each.

MLflow's exporter keeps deciding *what* to write; only its async queue is replaced (see
:mod:`mlflow_app_agent._mlflow_compat`), by one of:

* :class:`CountingQueue` (``thread``): MLflow's own in-process export threads, with every
  trace task counted as written or failed when it runs;
* :class:`ProcessExportQueue` (``process``): each task is pickled and sent over a pipe to
  ``python -m mlflow_app_agent.server.trace_writer``, a child running MLflow's exporter
  synchronously against the same tracking URI, which acknowledges every trace. With a local
  store (sqlite, files) writing a trace costs ~20-26 ms of CPU under the GIL; in the child it
  never holds the server's.

Guarantees: a request never waits for the export (bounded queues; a full queue drops the
trace and counts it); at shutdown :meth:`ExportHook.shutdown` waits up to the flush limit,
then every trace the server traced is counted once in :class:`TraceCounts` — written,
dropped (with the reason) or failed — except those already in the writer's pipe, which the
child writes after the server exits and reports in its own log line. If the child dies,
export falls back to MLflow's in-process queue. The child ignores SIGINT/SIGTERM and exits
when its pipe closes, or once the server is gone and nothing is left to read (see
:mod:`.trace_writer`). All state lives on the :class:`ExportHook` the app's tracer owns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from mlflow_app_agent import _mlflow_compat as compat
from mlflow_app_agent.server.trace_counts import TraceCounts
from mlflow_app_agent.server.trace_pipe import ProcessExportQueue
from mlflow_app_agent.server.trace_tasks import HeldSpans

logger = logging.getLogger("mlflow_app_agent.server.tracing")

LOCAL_SCHEMES = ("sqlite", "file")
EXPORT_WORKERS_ENV = "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS"


def is_local_store(tracking_uri: str) -> bool:
    """Whether MLflow writes this store in-process (sqlite, files: CPU-bound, GIL held)."""
    scheme, sep, _ = tracking_uri.partition(":")
    if not sep or len(scheme) == 1:  # a bare path, or a Windows drive letter
        return scheme not in ("databricks", "databricks-uc", "uc")
    return scheme in LOCAL_SCHEMES


def resolve_mode(mode: str, tracking_uri: str) -> str:
    """``process`` or ``thread``: what ``auto`` means for this tracking URI."""
    if mode != "auto":
        return mode
    return "process" if is_local_store(tracking_uri) else "thread"


class _FailureWatch(logging.Filter):
    """MLflow's exporter logs a failed write instead of raising: notice it per thread."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self.local, "watching", False) and record.levelno >= logging.WARNING:
            text = str(record.msg)
            if text.startswith(("Failed to send trace", "No trace or trace info")):
                self.local.failed = record.getMessage()
                return False  # the caller logs one line of its own and counts it
        return True

    def run(self, fn: Any, *args: Any) -> str | None:
        """Call ``fn``; the failure MLflow logged meanwhile on this thread, if any."""
        self.local.watching, self.local.failed = True, None
        try:
            fn(*args)
        finally:
            self.local.watching = False
        failed: str | None = self.local.failed
        return failed


_WATCH = _FailureWatch()
_WATCH_LOCK = threading.Lock()


def _failure_watch() -> _FailureWatch:
    with _WATCH_LOCK:  # one filter per process, added once (it is stateless per thread)
        exporter_logger = logging.getLogger(compat.EXPORTER_LOGGER)
        if _WATCH not in exporter_logger.filters:
            exporter_logger.addFilter(_WATCH)
    return _WATCH


class _CountedTask:
    """A trace task that records its outcome in the counters when it runs."""

    def __init__(self, task: Any, counts: TraceCounts, owner: CountingQueue,
                 spans: list[Any] | None = None) -> None:
        self.task = task
        self.handler = task.handler
        self.args = task.args
        self.error_msg = getattr(task, "error_msg", "")
        self.spans = spans or []
        self._counts = counts
        self._owner = owner

    def handle(self) -> None:
        if not self._owner.claim(self):
            return  # the server stopped before this ran: already counted as dropped
        try:
            for spans_task in self.spans:
                spans_task.handle()  # MLflow's _log_spans logs its own failures
            try:
                failed = _failure_watch().run(self.task.handler, *self.task.args)
            except Exception as exc:
                failed = f"{type(exc).__name__}: {exc}"
            if failed:
                self._counts.add("failed", reason="the tracking store refused it")
                logger.warning("writing a trace failed: %s", failed.splitlines()[0][:300])
            else:
                self._counts.add("written")
        finally:
            self._owner.done(self)


class CountingQueue:
    """MLflow's queue API (``put``/``flush``/``activate``/``is_active``) around MLflow's own
    queue, counting each trace task once."""

    def __init__(self, inner: Any, counts: TraceCounts, exporter_cls: Any) -> None:
        self.inner = inner
        self._counts = counts
        self._exporter_cls = exporter_cls
        self._lock = threading.Condition()
        self._waiting: set[_CountedTask] = set()
        self._running = 0
        self._closed = False
        self.held = HeldSpans()  # a trace's span tasks run inside its trace task

    def put(self, task: Any) -> None:
        kind = compat.task_kind(task, self._exporter_cls)
        if kind == "spans":
            for orphan in self.held.hold(task):
                self.inner.put(orphan)
            return
        if kind == "trace":
            task = self.counted(task, self.held.take(task))
        self.inner.put(task)

    def counted(self, task: Any, spans: list[Any] | None = None) -> _CountedTask:
        counted = _CountedTask(task, self._counts, self, spans)
        with self._lock:
            self._waiting.add(counted)
        return counted

    def claim(self, task: _CountedTask) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._waiting.discard(task)
            self._running += 1
            return True

    def done(self, task: _CountedTask) -> None:
        with self._lock:
            self._running -= 1
            self._lock.notify_all()

    def flush(self, terminate: bool = False) -> None:
        self.inner.flush(terminate=terminate)

    def activate(self) -> None:
        self.inner.activate()

    def is_active(self) -> bool:
        return bool(self.inner.is_active())

    def close(self, grace: float = 1.0) -> int:
        """Stop running queued trace tasks and give the ones being written ``grace`` seconds
        to finish; how many were still waiting (now dropped)."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = len(self._waiting), set()
            self._lock.wait_for(lambda: self._running == 0, timeout=grace)
        return waiting


class ExportHook:
    """The export queue installed for one app's tracer, and its shutdown."""

    def __init__(self, counts: TraceCounts) -> None:
        self.counts = counts
        self.mode = "thread"
        self.writer: ProcessExportQueue | None = None
        self._counting: CountingQueue | None = None
        self._started: list[ProcessExportQueue] = []
        self._lock = threading.Lock()

    def install(self, mode: str) -> str:
        """Route MLflow's current exporter through a counting queue, and through a writer
        process when ``mode`` (``auto`` resolved) says so. Returns the mode in effect:
        ``process``, ``thread`` or ``sync`` (MLflow exports inside the request)."""
        with self._lock:
            self.mode = self._install(mode)
            return self.mode

    def _install(self, mode: str) -> str:
        exporter = compat.current_exporter()
        if not isinstance(exporter, compat.exporter_class()):
            return "sync"  # an exporter this module does not know: leave it alone
        current = compat.export_queue(exporter)
        if current is None:
            return "sync"
        tracking_uri = compat.exporter_tracking_uri(exporter)
        wanted = resolve_mode(mode, tracking_uri)
        for stale in [w for w in self._started if w is not current]:
            stale.flush(terminate=True, timeout=30)  # MLflow rebuilt its exporter
            self._started.remove(stale)
        if isinstance(current, ProcessExportQueue):
            if wanted == "process" and current.alive and current.counts is self.counts:
                return "process"
            current.flush(terminate=True, timeout=30)
            if current in self._started:
                self._started.remove(current)
            current = current.fallback
        if isinstance(current, CountingQueue):
            current = current.inner
        if (wanted != "process" and is_local_store(tracking_uri) and not current.is_active()
                and EXPORT_WORKERS_ENV not in os.environ):
            # A local store is written with the GIL held, so MLflow's default of 10 export
            # threads only fight the event loop for it: one writer exports as fast (measured:
            # +14% requests/s under load with the same traces written).
            current = compat.new_thread_queue(max_workers=1)
        counting = CountingQueue(current, self.counts, type(exporter))
        self._counting = counting
        if wanted != "process":
            compat.set_export_queue(exporter, counting)
            self.writer = None
            return "thread"
        writer = ProcessExportQueue(tracking_uri, fallback=counting, exporter_cls=type(exporter),
                                    counts=self.counts)
        writer.start()
        self._started.append(writer)
        self.writer = writer
        compat.set_export_queue(exporter, writer)
        return "process"

    def shutdown(self, timeout: float) -> None:
        """Write what is queued within ``timeout`` seconds; count the rest as dropped."""
        deadline = time.monotonic() + timeout
        try:
            compat.flush_span_processor(timeout)
        except Exception:
            logger.warning("flushing MLflow's span processors failed", exc_info=True)
        timeout = max(deadline - time.monotonic(), 0.0)
        writer = self.writer
        if writer is not None:
            writer.finish(timeout)
        if self._counting is not None:
            done = threading.Event()

            def flush_inner() -> None:
                try:
                    self._counting.flush(terminate=False)  # type: ignore[union-attr]
                except Exception:
                    logger.warning("flushing MLflow's trace queue failed", exc_info=True)
                done.set()

            threading.Thread(target=flush_inner, name="trace-flush", daemon=True).start()
            done.wait(max(deadline - time.monotonic(), 0.0))
            late = self._counting.close()
            self.counts.add("dropped", late,
                            f"still queued when the {timeout:g} s shutdown flush limit passed")


__all__ = ["CountingQueue", "ExportHook", "ProcessExportQueue", "is_local_store", "resolve_mode"]
