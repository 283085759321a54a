"""The server's side of the trace writer process: :class:`ProcessExportQueue` pickles MLflow's
export tasks and pipes them to ``python -m mlflow_app_agent.server.trace_writer``, counting
each trace from the writer's confirmations (see :mod:`.trace_export` for the guarantees)."""

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
from typing import IO, TYPE_CHECKING, Any

from mlflow_app_agent import _mlflow_compat as compat
from mlflow_app_agent.server.trace_counts import TraceCounts
from mlflow_app_agent.server.trace_tasks import HeldSpans

if TYPE_CHECKING:
    from mlflow_app_agent.server.trace_export import CountingQueue

logger = logging.getLogger("mlflow_app_agent.server.tracing")

_FRAME = struct.Struct(">I")
_STOP = object()
FULL_QUEUE = "the trace writer was behind (export queue full)"


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
        self._held = HeldSpans()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sender: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._acks: dict[int, threading.Event] = {}
        self._next_ack = 0
        self._broken = False
        self._closed = False
        self._late_reason = ""
        self._writing = False  # the sender is writing a trace to the pipe
        self._sent_after_close = 0  # traces whose write finished after finish() counted
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
            [sys.executable, "-m", "mlflow_app_agent.server.trace_writer",
             "--server-pid", str(os.getpid())],  # it stops once this process is gone
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
        if kind == "spans":
            for orphan in self._held.hold(task):  # no trace task came for these
                self._put_item("spans", orphan)
            return
        if kind is None:
            self._to_fallback(task)
            return
        spans = self._held.take(task)
        if compat.trace_task_has_prompts(task):
            self._to_fallback(*spans, task)  # prompt links need the live client
            return
        self._put_item("trace", (task, spans))

    def _put_item(self, kind: str, payload: Any) -> None:
        """Queue for the writer without blocking; a trace (sent with its spans, as one item)
        that finds the queue full is dropped and counted."""
        if not self.alive or self._closed:
            self._to_fallback(*_tasks(kind, payload))
            return
        try:
            self._items.put_nowait((kind, payload))
        except queue.Full:
            if kind != "trace":
                return  # orphaned spans: their trace is not counted anywhere
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
        Never blocks longer than ``timeout`` plus a second (a trace write in progress)."""
        if self._proc is None or self._closed:
            return
        self.flush(timeout=timeout)
        self._late_reason = f"not handed to the writer within the {timeout:g} s shutdown flush limit"
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
        self.counts.add("dropped", late, self._late_reason)
        self._stopping = True
        self._items.put(("close", acked))
        self._items.put(_STOP)
        if self._sender is not None:
            # a trace the sender was writing when the server closed is in no count yet: it
            # is in the pipe once its write returns (the writer then reports it)
            self._sender.join(timeout=1.0)
        with self._lock:
            in_pipe += self._sent_after_close
            stuck = self._writing
        self.counts.add("left_to_writer", in_pipe)
        if stuck:
            self.counts.add("dropped", reason="the trace writer did not take it before the "
                            "server stopped")

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
                    frames = [pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)]
                else:  # a trace's spans, then the trace: in one write, so the pair is atomic
                    frames = [self._frame(task) for task in _tasks(kind, payload)]
            except Exception:
                logger.debug("a trace could not be pickled; writing it in-process",
                             exc_info=True)
                self._to_fallback(*_tasks(kind, payload))
                continue
            if kind == "trace":
                # under the lock finish() counts with: a trace taken after the server closed
                # is dropped here, one being written when it closed is counted by finish()
                with self._lock:
                    if self._closed:
                        self.counts.add("dropped", reason=self._late_reason)
                        continue
                    self._writing = True
            try:
                pipe.write(b"".join(_FRAME.pack(len(frame)) + frame for frame in frames))
                pipe.flush()
            except OSError:
                with self._lock:
                    self._writing = False
                self._mark_broken("the trace writer process exited")
                self._undeliverable(kind, payload)
                continue
            if kind == "trace":
                with self._lock:
                    self._writing = False
                    self.sent += 1
                    if self._closed:
                        self._sent_after_close += 1
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
            self._to_fallback(*_tasks(kind, payload))

    def _frame(self, task: Any) -> bytes:
        kind = compat.task_kind(task, self._exporter_cls)
        return pickle.dumps((kind, *_finished(kind, task.args)),
                            protocol=pickle.HIGHEST_PROTOCOL)

    def _to_fallback(self, *tasks: Any) -> None:
        """In-process export, where a trace's span tasks again wait for its trace task."""
        self.fallen_back += 1
        for task in tasks:
            self.fallback.put(task)


def _tasks(kind: str, payload: Any) -> list[Any]:
    """MLflow's tasks in a queued item: a trace's held span tasks first, then the trace."""
    if kind == "trace":
        task, spans = payload
        return [*spans, task]
    return [payload]


def _finished(kind: str | None, args: Any) -> Any:
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
