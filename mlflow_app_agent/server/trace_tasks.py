"""Span tasks held back until their trace's task: a trace is exported whole or not at all.

MLflow's exporter queues a trace's finished spans (``_log_spans``) ahead of the trace itself
(``_log_trace``). A store that logs spans (sqlite, a tracking server) creates the trace from
its spans alone, so spans written while the trace task is dropped at shutdown would leave a
trace in the store that the counts call dropped. Both export queues hold each trace's span
tasks here and hand them over with its trace task, to be written (or dropped) together.
"""

from __future__ import annotations

import threading
from typing import Any

from mlflow_app_agent import _mlflow_compat as compat

#: traces whose finished spans may wait for their trace task; a root span that never ends
#: (so no trace task comes) holds at most this many before the oldest go on alone
MAX_TRACES_WITH_HELD_SPANS = 10_000


class HeldSpans:
    """Span tasks by trace id, until the trace task takes them."""

    def __init__(self, limit: int = MAX_TRACES_WITH_HELD_SPANS) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._by_trace: dict[str, list[Any]] = {}

    def hold(self, spans_task: Any) -> list[Any]:
        """Keep a ``spans`` task (split per trace); returns span tasks that waited too long
        for their trace and should be written on their own."""
        orphans: list[Any] = []
        with self._lock:
            for trace_id, task in compat.spans_task_by_trace(spans_task).items():
                self._by_trace.setdefault(trace_id, []).append(task)
            while len(self._by_trace) > self._limit:
                orphans += self._by_trace.pop(next(iter(self._by_trace)))
        return orphans

    def take(self, trace_task: Any) -> list[Any]:
        """The span tasks held for this ``trace`` task's trace, in the order they came."""
        with self._lock:
            return self._by_trace.pop(compat.trace_task_trace_id(trace_task), [])

    def __len__(self) -> int:
        return len(self._by_trace)


__all__ = ["MAX_TRACES_WITH_HELD_SPANS", "HeldSpans"]
