"""The trace writer process (``python -m mlflow_app_agent.server.trace_writer``): MLflow's
exporter, synchronous, fed by the server's pipe (see :mod:`.trace_export`).

Frames in: ``("spans", ...)``, ``("trace", trace, prompts, workspace)``, ``("flush", n)``,
``("close", counted)``. Frames out: ``("trace", None | error)`` per trace, ``("flush", n)``.
``close`` says how many of its trace confirmations the server counted; whatever this process
writes after that (the server has stopped), it reports in one log line when its pipe closes.
A failed write is one warning line, never a traceback; a server that is gone (a broken
confirmation pipe) is not an error.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
from typing import IO, Any

logger = logging.getLogger("mlflow_app_agent.server.trace_writer")


class _Acks:
    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.open = True
        self.first_unsent: int | None = None

    def send(self, message: Any, index: int | None = None) -> None:
        from mlflow_app_agent.server.trace_pipe import _FRAME

        if not self.open:
            return
        reply = pickle.dumps(message)
        try:
            self._stream.write(_FRAME.pack(len(reply)) + reply)
        except OSError:  # the server exited: it counted what it read
            self.open = False
            self.first_unsent = index


def _one_line(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return (text.strip().splitlines() or [""])[0][:300]


def main() -> None:
    import signal

    # The server decides when we stop (by closing the pipe), not the terminal or the
    # platform's SIGTERM, so that traces queued at shutdown still get written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(5)  # background work: when CPUs are short, requests go first
    acks = _Acks(os.fdopen(os.dup(1), "wb", buffering=0))
    os.dup2(2, 1)  # anything a library prints goes to the server's stderr, not the ack pipe
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from mlflow_app_agent import _mlflow_compat as compat
    from mlflow_app_agent.server.trace_export import _failure_watch
    from mlflow_app_agent.server.trace_pipe import _read_frame

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI")
    exporter = compat.exporter_class()(tracking_uri=tracking_uri)
    try:  # open the store (engine, schema check: ~1 s on sqlite) before the first trace
        import mlflow

        mlflow.MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:
        logger.warning("the trace writer could not open the tracking store yet: %s",
                       _one_line(exc))
    watch = _failure_watch()
    outcomes: list[bool] = []  # per trace frame: written?
    counted_by_server: int | None = None
    stdin = sys.stdin.buffer
    while (frame := _read_frame(stdin)) is not None:
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
