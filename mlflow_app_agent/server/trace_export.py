"""Where finished traces go, and the count of what happened to each.

MLflow's exporter keeps deciding *what* to write; only its async queue is replaced (see
:mod:`mlflow_app_agent._mlflow_compat`), by one of:

* :class:`CountingQueue` (``thread``): MLflow's own in-process export threads, with every
  trace task counted as written or failed when it runs;
* :class:`ProcessExportQueue` (``process``): each task is pickled and sent over a pipe to
  ``python -m mlflow_app_agent.server.trace_export``, a child running MLflow's exporter
  synchronously against the same tracking URI, which acknowledges every trace. With a local
  store (sqlite, files) writing a trace costs ~20-26 ms of CPU under the GIL; in the child it
  never holds the server's.

Guarantees: a request never waits for the export (bounded queues; a full queue drops the
trace and counts it); at shutdown :meth:`ExportHook.shutdown` waits up to the flush limit,
then every trace the server traced is counted once in :class:`TraceCounts` — written,
dropped (with the reason) or failed — except those already in the writer's pipe, which the
child writes after the server exits and reports in its own log line. If the child dies,
export falls back to MLflow's in-process queue. The child ignores SIGINT/SIGTERM and exits
when its pipe closes. All state lives on the :class:`ExportHook` the app's tracer owns.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from mlflow_app_agent import _mlflow_compat as compat
from mlflow_app_agent.server.trace_counts import TraceCounts

logger = logging.getLogger("mlflow_app_agent.server.tracing")

LOCAL_SCHEMES = ("sqlite", "file")
_FRAME = struct.Struct(">I")
_STOP = object()
EXPORT_WORKERS_ENV = "MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS"
FULL_QUEUE = "the trace writer was behind (export queue full)"


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

    def __init__(self, task: Any, counts: TraceCounts, owner: CountingQueue) -> None:
        self.task = task
        self.handler = task.handler
        self.args = task.args
        self.error_msg = getattr(task, "error_msg", "")
        self._counts = counts
        self._owner = owner

    def handle(self) -> None:
        if not self._owner.claim(self):
            return  # the server stopped before this ran: already counted as dropped
        try:
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

    def put(self, task: Any) -> None:
        if compat.task_kind(task, self._exporter_cls) == "trace":
            task = self.counted(task)
        self.inner.put(task)

    def counted(self, task: Any) -> _CountedTask:
        counted = _CountedTask(task, self._counts, self)
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


class ProcessExportQueue:
    """Stands in for MLflow's ``AsyncTraceExportQueue`` and forwards the exporter's span and
    trace tasks to the writer process. Other tasks (e.g. a trace with linked prompts), and
    everything once the writer is gone, go to ``fallback`` (a :class:`CountingQueue`)."""

    def __init__(self, tracking_uri: str, *, fallback: CountingQueue, exporter_cls: Any,
                 counts: TraceCounts, max_size: int = 0) -> None:
        self.tracking_uri = tracking_uri
        self.fallback = fallback
        self.counts = counts
        self._exporter_cls = exporter_cls
        if not max_size:
            from mlflow.environment_variables import MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE

            max_size = MLFLOW_ASYNC_TRACE_LOGGING_MAX_QUEUE_SIZE.get()
        self._items: queue.Queue[Any] = queue.Queue(maxsize=max_size)
        self._proc: subprocess.Popen[bytes] | None = None
        self._sender: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._acks: dict[int, threading.Event] = {}
        self._next_ack = 0
        self._broken = False
        self._closed = False
        self._last_drop_warning = 0.0
        self.sent = 0  # trace frames written to the pipe
        self.acked = 0  # of those, confirmed by the writer (written or failed)
        self.dropped = 0
        self.fallen_back = 0
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return (self._proc is not None and self._proc.poll() is None and not self._broken
                and not self._closed)

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri,
               "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow_app_agent.server.trace_writer"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        _widen_pipe(self._proc.stdin)
        self._broken = self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="trace-writer-send",
                                        daemon=True)
        self._reader = threading.Thread(target=self._read_acks, name="trace-writer-acks",
                                        daemon=True)
        self._sender.start()
        self._reader.start()

    def activate(self) -> None:  # MLflow's queue API: restart after a terminating flush
        if not self.alive:
            self.start()

    def is_active(self) -> bool:
        return self.alive

    # --- MLflow's queue API -----------------------------------------------------------------

    def put(self, task: Any) -> None:
        kind = compat.task_kind(task, self._exporter_cls)
        if kind == "trace" and compat.trace_task_has_prompts(task):
            kind = None  # prompt links need the live client: keep them in-process
        if kind is None or not self.alive or self._closed:
            self._to_fallback(task)
            return
        try:
            self._items.put_nowait((kind, task))
        except queue.Full:
            if kind != "trace":
                return  # the trace task that follows carries the spans too
            self.dropped += 1
            self.counts.add("dropped", reason=FULL_QUEUE)
            now = time.monotonic()
            if now - self._last_drop_warning > 30:
                self._last_drop_warning = now
                logger.warning("the trace writer is behind; dropping traces (%d so far). "
                               "Lower MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND or use a "
                               "tracking server.", self.dropped)

    def flush(self, terminate: bool = False, timeout: float | None = None) -> bool:
        """Return once the child wrote everything put before this call (True), or it died or
        ``timeout`` passed (False)."""
        complete = True
        if self.alive:
            done = threading.Event()
            with self._lock:
                self._next_ack += 1
                ack = self._next_ack
                self._acks[ack] = done
            self._items.put(("flush", ack))
            complete = done.wait(timeout)
        self.fallback.flush(terminate=terminate)
        if terminate:
            self._stop()
        return complete

    def finish(self, timeout: float) -> None:
        """Shutdown: flush within ``timeout``; drop (and count) what never reached the pipe;
        tell the writer how many of its confirmations were counted here, and close the pipe.
        Never blocks longer than ``timeout`` plus a moment."""
        if self._proc is None or self._closed:
            return
        complete = self.flush(timeout=timeout)
        with self._lock:
            self._closed = True
            in_pipe = self.sent - self.acked
            acked = self.acked
        late = 0
        while True:
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP and item[0] == "trace":
                late += 1
        self.counts.add("dropped", late,
                        f"not handed to the writer within the {timeout:g} s shutdown flush limit")
        if not complete:
            self.counts.add("left_to_writer", in_pipe)
        self._stopping = True
        self._items.put(("close", acked))
        self._items.put(_STOP)
        if self._sender is not None:
            self._sender.join(timeout=0.5)

    # --- threads ---------------------------------------------------------------------------

    def _send_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        pipe = proc.stdin
        while True:
            item = self._items.get()
            if item is _STOP:
                break
            kind, payload = item
            if self._broken:
                self._undeliverable(kind, payload)
                continue
            try:
                if kind in ("flush", "close"):
                    frame = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
                else:
                    frame = pickle.dumps((kind, *_finished(kind, payload.args)),
                                         protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                logger.debug("a trace could not be pickled; writing it in-process",
                             exc_info=True)
                self._to_fallback(payload)
                continue
            try:
                pipe.write(_FRAME.pack(len(frame)) + frame)
                pipe.flush()
                if kind == "trace":
                    with self._lock:
                        self.sent += 1
            except OSError:
                self._mark_broken("the trace writer process exited")
                self._undeliverable(kind, payload)
        try:
            pipe.close()
        except OSError:
            pass

    def _read_acks(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        while (frame := _read_frame(proc.stdout)) is not None:
            kind, value = pickle.loads(frame)
            if kind == "flush":
                self._release(value)
                continue
            with self._lock:
                if self._closed:
                    continue  # the writer reports these itself
                self.acked += 1
                self.counts.add("written" if value is None else "failed",
                                reason=None if value is None else "the tracking store refused it")
        if not self._stopping:
            self._mark_broken(f"the trace writer process exited (code {proc.wait()})")
        self._release(None)

    def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._stopping = True
        self._items.put(_STOP)
        if self._sender is not None:
            self._sender.join(timeout=30)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._proc = None
        self._stopping = False

    # --- helpers ---------------------------------------------------------------------------

    def _release(self, ack: int | None) -> None:
        """Wake the flush waiting for ``ack`` (and any before it); ``None`` wakes all."""
        with self._lock:
            for key in [k for k in self._acks if ack is None or k <= ack]:
                self._acks.pop(key).set()

    def _mark_broken(self, why: str) -> None:
        if not self._broken:
            self._broken = True
            logger.warning("%s; traces are now written in-process", why)

    def _undeliverable(self, kind: str, payload: Any) -> None:
        if kind == "flush":
            self._release(payload)
        elif kind != "close":
            self._to_fallback(payload)

    def _to_fallback(self, task: Any) -> None:
        self.fallen_back += 1
        self.fallback.put(task)


def _finished(kind: str, args: Any) -> Any:
    """Task arguments with MLflow's live spans (which refuse pickling) made immutable."""
    if kind != "spans":
        return args
    experiment_id, spans, *rest = args
    spans = [s.to_immutable_span() if hasattr(s, "to_immutable_span") else s for s in spans]
    return (experiment_id, spans, *rest)


def _widen_pipe(pipe: IO[bytes] | None, size: int = 1 << 20) -> None:
    """Grow the pipe to the writer (64 KiB by default, ~25 traces) to 1 MiB where Linux allows:
    what sits in the pipe is written even if the server dies the moment after (uvicorn
    re-raises SIGTERM, so no exit hooks run), while the sender's queue would be lost."""
    try:
        import fcntl

        set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; named in Python 3.10+
        fcntl.fcntl(pipe.fileno(), set_pipe_size, size)  # type: ignore[union-attr]
    except (ImportError, OSError, AttributeError, ValueError):
        pass  # not Linux, or above /proc/sys/fs/pipe-max-size: keep the default


def _read_frame(stream: IO[bytes]) -> bytes | None:
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(header)
    body = stream.read(size)
    return body if len(body) == size else None
