"""Write MLflow traces from a child process, so trace I/O never holds the server's GIL.

With a local store (sqlite, files) MLflow writes each trace in its export thread at a cost of
~20-26 ms of CPU (~58 SQL statements), under the same GIL as the event loop: a few traces a
second take 15-25% of a busy server. Here MLflow's exporter keeps deciding *what* to write;
only its async queue is replaced by :class:`ProcessExportQueue`, which pickles each export
task and sends it over a pipe to ``python -m mlflow_app_agent.server.trace_export``. That
child runs MLflow's own exporter, synchronously, against the same tracking URI.

Guarantees: a request never waits for the child (a bounded queue drains in a sender thread;
when it is full the trace is dropped and counted, as MLflow does); ``flush()`` returns only
after the child has written everything sent before it; if the child dies, export falls back
to MLflow's in-process queue; the child ignores SIGINT/SIGTERM and exits when the pipe
closes, so what the server handed over is written even after the server has exited, and an
orphan cannot outlive its server by more than that. Remote stores (``http(s)://``,
``databricks``) are I/O-bound and keep MLflow's queue unless ``process`` is asked for.
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

logger = logging.getLogger("mlflow_app_agent.server.tracing")

LOCAL_SCHEMES = ("sqlite", "file")
_FRAME = struct.Struct(">I")
_STOP = object()
# Writers started in this process. MLflow rebuilds its exporter when the tracking URI
# changes; the writer of an exporter that is no longer current is stopped at the next
# install rather than left running until exit.
_STARTED: list[ProcessExportQueue] = []
_INSTALL_LOCK = threading.Lock()


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


def install(mode: str) -> str:
    """Route the current MLflow trace exporter through a writer process when ``mode`` (after
    ``auto`` is resolved) says so. Returns the mode in effect: ``process`` or ``thread``.
    Idempotent; ``thread`` puts MLflow's own queue back if a writer was installed."""
    with _INSTALL_LOCK:
        return _install(mode)


def _install(mode: str) -> str:
    from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter
    from mlflow.tracing.provider import _get_trace_exporter

    exporter = _get_trace_exporter()
    current = getattr(exporter, "_async_queue", None)
    if not isinstance(exporter, MlflowV3SpanExporter) or current is None:
        return "thread"  # sync export, or an exporter this module does not know
    tracking_uri = exporter._client.tracking_uri
    wanted = resolve_mode(mode, tracking_uri)
    for stale in [w for w in _STARTED if w is not current]:
        stale.flush(terminate=True, timeout=30)
        _STARTED.remove(stale)
    if isinstance(current, ProcessExportQueue):
        if wanted == "process" and current.alive:
            return "process"
        current.flush(terminate=True, timeout=30)
        if current in _STARTED:
            _STARTED.remove(current)
        exporter._async_queue = current.fallback
        current = current.fallback
    if wanted != "process":
        return "thread"
    writer = ProcessExportQueue(tracking_uri, fallback=current, exporter_cls=type(exporter))
    writer.start()
    _STARTED.append(writer)
    exporter._async_queue = writer  # type: ignore[assignment]  # same duck-typed API
    return "process"


def current_queue() -> ProcessExportQueue | None:
    """The installed writer, if any (for stats)."""
    from mlflow.tracing.provider import _get_trace_exporter

    found = getattr(_get_trace_exporter(), "_async_queue", None)
    return found if isinstance(found, ProcessExportQueue) else None


class ProcessExportQueue:
    """Stands in for MLflow's ``AsyncTraceExportQueue`` (``put``/``flush``/``activate``/
    ``is_active``) and forwards the exporter's ``_log_spans``/``_log_trace`` tasks to the
    writer process. Other tasks (e.g. a trace with linked prompts) go to ``fallback``."""

    def __init__(
        self, tracking_uri: str, *, fallback: Any, exporter_cls: Any, max_size: int = 0
    ) -> None:
        self.tracking_uri = tracking_uri
        self.fallback = fallback
        self._forwarded = {
            exporter_cls._log_spans: "spans",
            exporter_cls._log_trace: "trace",
        }
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
        self._last_drop_warning = 0.0
        self.sent = 0
        self.dropped = 0
        self.fallen_back = 0
        self._stopping = False
        self._exit_hook = False

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and not self._broken

    def start(self) -> None:
        env = {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri,
               "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow_app_agent.server.trace_export"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        _widen_pipe(self._proc.stdin)
        self._broken = False
        self._sender = threading.Thread(target=self._send_loop, name="trace-writer-send",
                                        daemon=True)
        self._reader = threading.Thread(target=self._read_acks, name="trace-writer-acks",
                                        daemon=True)
        self._sender.start()
        self._reader.start()
        if not self._exit_hook:
            import atexit

            self._exit_hook = True
            atexit.register(self._at_exit)

    def _at_exit(self) -> None:
        """Hand what is queued to the writer and close its pipe, without waiting for it to
        be written: the writer finishes on its own (it ignores the stop signal), so the
        server's exit stays inside the platform's SIGTERM-to-SIGKILL window."""
        if self._proc is None or self._sender is None:
            return
        self._stopping = True
        self._items.put(_STOP)
        self._sender.join(timeout=5)

    def activate(self) -> None:  # MLflow's queue API: restart after a terminating flush
        if not self.alive:
            self.start()

    def is_active(self) -> bool:
        return self.alive

    # --- MLflow's queue API -----------------------------------------------------------------

    def put(self, task: Any) -> None:
        handler = getattr(task, "handler", None)
        kind = self._forwarded.get(getattr(handler, "__func__", None))
        if kind == "trace" and task.args[1]:
            kind = None  # prompt links need the live client: keep them in-process
        if kind is None or not self.alive:
            self._to_fallback(task)
            return
        try:
            self._items.put_nowait((kind, task))
        except queue.Full:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_drop_warning > 30:
                self._last_drop_warning = now
                logger.warning("the trace writer is behind; dropping traces (%d so far). "
                               "Lower MLFLOW_APP_AGENT_TRACE_MAX_PER_SECOND or use a "
                               "tracking server.", self.dropped)

    def flush(self, terminate: bool = False, timeout: float | None = None) -> None:
        """Return once the child wrote everything put before this call (or it died)."""
        if self.alive:
            done = threading.Event()
            with self._lock:
                self._next_ack += 1
                ack = self._next_ack
                self._acks[ack] = done
            self._items.put(("flush", ack))
            done.wait(timeout)
        self.fallback.flush(terminate=terminate)
        if terminate:
            self._stop()

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
                if kind == "flush":
                    frame = pickle.dumps(("flush", payload), protocol=pickle.HIGHEST_PROTOCOL)
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
                self.sent += kind != "flush"
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
        while (ack := _read_frame(proc.stdout)) is not None:
            self._release(pickle.loads(ack))
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
        else:
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


def main() -> None:
    """The writer process: MLflow's exporter, synchronous, fed by the parent's pipe."""
    import signal

    # The server decides when we stop (by closing the pipe), not the terminal or the
    # platform's SIGTERM, so that traces queued at shutdown still get written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(5)  # background work: when CPUs are short, requests go first
    acks = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything a library prints goes to the server's stderr, not the ack pipe
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter

    exporter = MlflowV3SpanExporter(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))
    stdin = sys.stdin.buffer
    while (frame := _read_frame(stdin)) is not None:
        try:
            kind, *args = pickle.loads(frame)
            if kind == "spans":
                exporter._log_spans(*args)
            elif kind == "trace":
                trace, _prompts, workspace = args
                exporter._log_trace(trace, [], workspace)
            elif kind == "flush":
                reply = pickle.dumps(args[0])
                acks.write(_FRAME.pack(len(reply)) + reply)
        except Exception:
            logger.warning("writing a trace failed", exc_info=True)


if __name__ == "__main__":
    main()
