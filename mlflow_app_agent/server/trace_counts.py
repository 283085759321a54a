"""The trace counters of one app: the single place that says what happened to each trace.

Every request is either ``skipped`` (sampling, rate cap) or ``traced`` (its root span
started). Every traced request ends in exactly one of ``written`` (the store took it),
``dropped`` (not written: export queue full, shutdown flush limit, never reached the
exporter) or ``failed`` (an error: the span could not start, or the store refused the
trace). Until then it is ``pending``. After :meth:`TraceCounts.settle` (at shutdown)
``traced == written + dropped + failed`` holds. ``/agent/info`` shows :meth:`snapshot`.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class TraceCounts:
    """Thread-safe counters (export threads, the writer's ack thread and the loop update them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.traced = 0
        self.skipped = 0
        self.written = 0
        self.dropped = 0
        self.failed = 0
        #: why traces were dropped or failed: reason -> count
        self.reasons: Counter[str] = Counter()
        #: traces handed to the writer process but not yet confirmed when the server stopped
        self.left_to_writer = 0

    def add(self, field: str, n: int = 1, reason: str | None = None) -> None:
        if n <= 0:
            return
        with self._lock:
            setattr(self, field, getattr(self, field) + n)
            if reason:
                self.reasons[f"{field}: {reason}"] += n

    @property
    def pending(self) -> int:
        """Traced, not yet written, dropped or failed (queued, or being written)."""
        return self.traced - self.written - self.dropped - self.failed - self.left_to_writer

    def settle(self, reason: str) -> None:
        """At shutdown: what is still pending will not be written by this process."""
        with self._lock:
            rest = self.pending
        self.add("dropped", rest, reason)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "traced": self.traced,
                "skipped": self.skipped,
                "written": self.written,
                "dropped": self.dropped,
                "failed": self.failed,
                "pending": self.pending,
                "reasons": dict(self.reasons),
            }

    def summary(self) -> str:
        """The one shutdown log line: ``traces: N written, M dropped (reason), ...``."""
        with self._lock:
            parts = [f"{self.written} written"]
            for field in ("dropped", "failed"):
                count = getattr(self, field)
                why = "; ".join(f"{n}: {r}" for r, n in self.reasons.items()
                                if r.startswith(field + ":"))
                why = why.replace(field + ": ", "")
                parts.append(f"{count} {field}" + (f" ({why})" if count and why else ""))
            if self.left_to_writer:
                parts.append(f"{self.left_to_writer} left to the writer process (it logs "
                             "them when written)")
            return f"traces: {', '.join(parts)} of {self.traced} traced"
