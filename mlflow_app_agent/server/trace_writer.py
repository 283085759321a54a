"""The trace writer process (``python -m mlflow_app_agent.server.trace_writer``): MLflow's
exporter, synchronous, fed by the server's pipe (see :mod:`.trace_export`).

Frames in: ``("spans", ...)``, ``("trace", trace, prompts, workspace)``, ``("flush", n)``,
``("close", counted)``. Frames out: ``("trace", None | error)`` per trace, ``("flush", n)``.
``close`` says how many of its trace confirmations the server counted; whatever this process
writes after that (the server has stopped), it reports in one log line when its pipe closes.
A failed write is one warning line, never a traceback; a server that is gone (a broken
confirmation pipe) is not an error.

The writer never outlives its server for long, however the server ends: it exits at the
pipe's end of file (the server closed it, exited or was killed), and it also watches its
parent (``--server-pid``), because a process the server forked (e.g. an agent's
``multiprocessing`` pool) holds a copy of the pipe and would keep the end of file from
coming: once the server is gone and nothing is left unread, the writer stops. A server
killed while the writer is still starting up (importing MLflow) ends it at once when it was
sent nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import select
import threading
from typing import Any

logger = logging.getLogger("mlflow_app_agent.server.trace_writer")


POLL_SECONDS = 0.5  # how often a writer with nothing to read checks that its server lives


class _ServerPipe:
    """The frames the server sends on ``fd``; ``None`` at the end of file, or once the server
    (``server_pid``, the parent) is gone and nothing more is readable."""

    def __init__(self, fd: int, server_pid: int | None) -> None:
        self.fd = fd
        self.server_pid = server_pid

    def server_gone(self) -> bool:
        # An orphan is re-parented (to init or a subreaper): its parent id changes.
        return self.server_pid is not None and os.getppid() != self.server_pid

    def unread(self) -> int | None:
        """Bytes waiting in the pipe (Linux, BSD, macOS), else ``None``."""
        try:
            import array
            import fcntl
            import termios

            buf = array.array("i", [0])
            fcntl.ioctl(self.fd, termios.FIONREAD, buf)
            return int(buf[0])
        except (ImportError, OSError, AttributeError):
            return None

    def _read_exact(self, size: int) -> bytes | None:
        chunks: list[bytes] = []
        left = size
        while left:
            ready, _, _ = select.select([self.fd], [], [], POLL_SECONDS)
            if not ready:
                if self.server_gone():
                    return None  # no one left to finish the frame (a forked child holds it)
                continue
            chunk = os.read(self.fd, min(left, 1 << 20))
            if not chunk:
                return None  # end of file: every copy of the write end is closed
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def read_frame(self) -> bytes | None:
        from mlflow_app_agent.server.trace_pipe import _FRAME

        header = self._read_exact(_FRAME.size)
        if header is None:
            return None
        (size,) = _FRAME.unpack(header)
        return self._read_exact(size) if size else b""


class _Acks:
    def __init__(self, fd: int, pipe: _ServerPipe) -> None:
        self._fd = fd
        self._pipe = pipe
        os.set_blocking(fd, False)  # a full pipe nobody reads must not hang the writer
        self.open = True
        self.first_unsent: int | None = None

    def send(self, message: Any, index: int | None = None) -> None:
        from mlflow_app_agent.server.trace_pipe import _FRAME

        if not self.open:
            return
        reply = pickle.dumps(message)
        data = _FRAME.pack(len(reply)) + reply
        while data:
            try:
                data = data[os.write(self._fd, data):]
            except BlockingIOError:  # the server is busy (or gone, its pipe held by a fork)
                if self._pipe.server_gone():
                    self._lost(index)
                    return
                select.select([], [self._fd], [], POLL_SECONDS)
            except OSError:  # the server exited: it counted what it read
                self._lost(index)
                return

    def _lost(self, index: int | None) -> None:
        self.open = False
        self.first_unsent = index


def _one_line(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [""])[0][:300]


def _watch_start_up(pipe: _ServerPipe, started: threading.Event, lock: threading.Lock) -> None:
    """While the writer imports MLflow (seconds, more on a busy machine): if the server is
    gone and sent nothing, there is nothing to write, so exit now."""
    while not started.wait(0.2):
        if pipe.server_gone() and pipe.unread() == 0:
            with lock:
                if not started.is_set():
                    os._exit(0)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mlflow_app_agent.server.trace_writer")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="the server's process id (the writer stops once it is gone)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import signal

    # The server decides when we stop (by closing the pipe), not the terminal or the
    # platform's SIGTERM, so that traces queued at shutdown still get written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    args = _arguments(argv)
    pipe = _ServerPipe(0, args.server_pid)
    started, start_lock = threading.Event(), threading.Lock()
    threading.Thread(target=_watch_start_up, args=(pipe, started, start_lock),
                     name="server-watch", daemon=True).start()
    if hasattr(os, "nice"):
        os.nice(5)  # background work: when CPUs are short, requests go first
    acks = _Acks(os.dup(1), pipe)
    os.dup2(2, 1)  # anything a library prints goes to the server's stderr, not the ack pipe
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from mlflow_app_agent import _mlflow_compat as compat
    from mlflow_app_agent.server.trace_export import _failure_watch

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    exporter = compat.exporter_class()(tracking_uri=tracking_uri)
    try:  # open the store (engine, schema check: ~1 s on sqlite) before the first trace
        import mlflow

        mlflow.MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:
        logger.warning("the trace writer could not open the tracking store yet: %s",
                       _one_line(exc))
    watch = _failure_watch()
    with start_lock:
        started.set()
    outcomes: list[bool] = []  # per trace frame: written?
    counted_by_server: int | None = None
    while (frame := pipe.read_frame()) is not None:
        try:
            kind, *args = pickle.loads(frame)
        except Exception as exc:
            logger.warning("a frame from the server could not be read: %s", _one_line(exc))
            continue
        if kind == "spans":
            try:
                compat.write_spans(exporter, *args)
            except Exception as exc:
                logger.warning("writing spans failed: %s", _one_line(exc))
        elif kind == "trace":
            trace, _prompts, workspace = args
            try:
                failed = watch.run(compat.write_trace, exporter, trace, workspace)
            except Exception as exc:
                failed = _one_line(exc)
            if failed:
                logger.warning("writing a trace failed: %s", _one_line(failed))
            outcomes.append(not failed)
            acks.send(("trace", failed and _one_line(failed)), len(outcomes) - 1)
        elif kind == "flush":
            acks.send(("flush", args[0]))
        elif kind == "close":
            counted_by_server = int(args[0])
            acks.open = False
    start = counted_by_server if counted_by_server is not None else acks.first_unsent
    late = outcomes[start:] if start is not None else []
    if late:
        written = sum(late)
        logger.warning("traces: %d written by the writer process after the server stopped, "
                       "%d failed", written, len(late) - written)


if __name__ == "__main__":
    main()
