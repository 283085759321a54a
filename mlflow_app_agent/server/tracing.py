"""One MLflow trace per request, without letting tracing slow down or fail a request.

MLflow is imported off the request path (a background warm-up), each trace is tagged with
the request id and the caller's email (never the token) and linked to the served
LoggedModel. Writing a trace costs ~20 ms of CPU with a sqlite store, so traces are
admitted by a sample ratio and a token bucket. What happens to each trace is counted in one
place, :class:`~mlflow_app_agent.server.trace_counts.TraceCounts` (``Tracer.counts``, shown
by ``/agent/info``); at shutdown one log line gives the totals. Any exception from MLflow is
logged (one line) and swallowed. What is traced is made encodable (lone surrogates become
U+FFFD) and error messages are scrubbed (see :mod:`.redact`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mlflow_app_agent.context import RequestContext
from mlflow_app_agent.server.redact import encodable_tree
from mlflow_app_agent.server.trace_counts import TraceCounts

if TYPE_CHECKING:
    from mlflow_app_agent.server.trace_pipe import ProcessExportQueue

logger = logging.getLogger("mlflow_app_agent.server.tracing")

TAG_REQUEST_ID = "mlflow_app_agent.request_id"
TAG_ENDPOINT = "mlflow_app_agent.endpoint"
NEVER_EXPORTED = "ended but never reached the exporter"
#: response header carrying the request's trace id (when it was traced)
HEADER_TRACE_ID = "x-mlflow-trace-id"
#: request header the chat page sends: its requests are always traced (people type slowly,
#: and their feedback needs a trace to land on), past the sample ratio and the rate cap
HEADER_ALWAYS_TRACE = "x-mlflow-app-agent-trace"
#: traces remembered per process for ``POST /feedback`` by request id (oldest forgotten)
RECENT_TRACES = 10_000


def always_traced(headers: Any) -> bool:
    return headers.get(HEADER_ALWAYS_TRACE) == "always"


class Tracer:
    """Per-app tracing policy and counters (no module state)."""

    def __init__(
        self,
        *,
        enabled: bool,
        sample_ratio: float = 1.0,
        max_per_second: float = 0.0,
        model_id: str | None = None,
        export: str = "auto",
    ) -> None:
        self.enabled = enabled
        #: asked for (auto/process/thread) until warm-up, then what is in effect
        self.export = export
        self.sample_ratio = sample_ratio
        self.max_per_second = max_per_second
        self.model_id = model_id
        self.counts = TraceCounts()
        self._hook: Any = None  # trace_export.ExportHook, once MLflow is imported
        self._mlflow: Any = None
        # Where traces go, resolved once: given only MLFLOW_EXPERIMENT_ID/_NAME, MLflow
        # looks the experiment up in the store at every trace start, on the event loop.
        self.destination: Any = None
        self._tokens = max(max_per_second, 1.0)
        self._last = time.monotonic()
        self._lock = threading.Lock()
        # warm-up runs in a worker thread that a shutdown cannot cancel: the export hook is
        # installed, and read by shutdown, under this lock, and not at all once shut down,
        # so an app stopped during its warm-up leaves no writer process behind
        self._export_lock = threading.Lock()
        self._shut_down = False
        #: request id -> (trace id, user) of this process's recent traces, for /feedback
        self.recent: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    def remember(self, request_id: str | None, trace_id: str | None, user: str | None) -> None:
        if not request_id or not trace_id:
            return
        with self._lock:
            self.recent[request_id] = (trace_id, user)
            while len(self.recent) > RECENT_TRACES:
                self.recent.popitem(last=False)

    # --- set-up and shutdown ------------------------------------------------------------

    def warm_up(self) -> None:
        """Import MLflow (slow: ~1-2 s) so the first traced request does not pay for it."""
        if not self.enabled or self._mlflow is not None:
            return
        try:
            import mlflow

            self._mlflow = mlflow
        except Exception:
            logger.warning("MLflow tracing is unavailable; serving without traces", exc_info=True)
            self.enabled = False
            return
        # The first trace otherwise pays for the tracer provider and the tracking store
        # (engine, schema check: ~1 s on sqlite) inside a request.
        try:
            from mlflow.tracing.provider import get_bridged_tracer_provider

            get_bridged_tracer_provider()
            mlflow.MlflowClient().search_experiments(max_results=1)
            self.destination = _pinned_destination(mlflow)
        except Exception:
            logger.warning("warming up MLflow tracing failed; traces may still work",
                           exc_info=True)
        with self._export_lock:
            if self._shut_down:
                return
            try:
                from mlflow_app_agent.server.trace_export import ExportHook

                self._hook = ExportHook(self.counts)
                self.export = self._hook.install(self.export)
            except Exception:
                self.export = "thread"
                logger.warning("the trace writer process could not start; writing traces "
                               "in-process", exc_info=True)

    def shutdown(self, timeout: float) -> None:
        """Write what is queued within ``timeout`` s, count the rest, log the totals once."""
        with self._export_lock:
            self._shut_down = True
            hook = self._hook
        if self._mlflow is None or not self.enabled:
            return
        try:
            if hook is not None:
                hook.shutdown(timeout)
        except Exception:
            logger.warning("flushing traces at shutdown failed", exc_info=True)
        self.counts.settle(NEVER_EXPORTED)
        snap = self.counts.snapshot()
        lost = snap["dropped"] or snap["failed"]
        logger.log(logging.WARNING if lost else logging.INFO, "%s", self.counts.summary())

    def writer(self) -> ProcessExportQueue | None:
        """The trace writer process's queue while export is ``process``, else ``None``."""
        hook = self._hook
        if hook is None or self.export != "process":
            return None
        writer: ProcessExportQueue | None = hook.writer
        return writer

    def stats(self) -> dict[str, Any]:
        writer: dict[str, Any] | None = None
        hook = self._hook
        if hook is not None and hook.writer is not None and self.export == "process":
            queue = hook.writer
            writer = {"sent": queue.sent, "confirmed": queue.acked,
                      "in_process": queue.fallen_back, "alive": queue.alive}
        return {
            "enabled": self.enabled,
            "export": self.export,
            "writer": writer,
            "sample_ratio": self.sample_ratio,
            "max_per_second": self.max_per_second or None,
            "model_id": self.model_id,
            **self.counts.snapshot(),
        }

    # --- per request ----------------------------------------------------------------------

    def _admit(self, always: bool = False) -> bool:
        if not self.enabled or self._mlflow is None:
            return False
        if always:
            return True
        if self.sample_ratio < 1.0 and random.random() >= self.sample_ratio:
            return False
        if self.max_per_second <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            burst = max(self.max_per_second, 1.0)
            self._tokens = min(burst, self._tokens + (now - self._last) * self.max_per_second)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
        return False

    def request_span(
        self, name: str, endpoint: str, inputs: Any, ctx: RequestContext, *, always: bool = False
    ) -> RequestSpan:
        if not self._admit(always):
            if self.enabled:
                self.counts.add("skipped")
            return RequestSpan(self, None, name, endpoint, inputs, ctx)
        return RequestSpan(self, self._mlflow, name, endpoint, inputs, ctx)


class RequestSpan:
    """Context manager around ``mlflow.start_span``; a no-op when the request is not traced.
    Enter and exit it in the same task (MLflow keeps the active span in a contextvar)."""

    def __init__(
        self,
        tracer: Tracer,
        mlflow: Any,
        name: str,
        endpoint: str,
        inputs: Any,
        ctx: RequestContext,
    ) -> None:
        self._tracer = tracer
        self._mlflow = mlflow
        self._name = name
        self._endpoint = endpoint
        self._inputs = inputs
        self._ctx = ctx
        self._cm: Any = None
        self._span: Any = None

    @property
    def active(self) -> bool:
        return self._span is not None

    @property
    def trace_id(self) -> str | None:
        return getattr(self._span, "trace_id", None)

    @property
    def span_id(self) -> str | None:
        return getattr(self._span, "span_id", None)

    def __enter__(self) -> RequestSpan:
        if self._mlflow is None:
            return self
        try:
            kwargs: dict[str, Any] = {"name": self._name, "span_type": "AGENT"}
            if self._tracer.destination is not None:
                kwargs["trace_destination"] = self._tracer.destination
            self._cm = self._mlflow.start_span(**kwargs)
            self._span = self._cm.__enter__()
        except Exception:
            self._tracer.counts.add("traced")
            self._tracer.counts.add("failed", reason="the span could not start")
            self._fail("starting")
            return self
        self._tracer.counts.add("traced")
        try:
            self._span.set_inputs(encodable_tree(self._inputs))
            tags = {TAG_REQUEST_ID: self._ctx.request_id or "", TAG_ENDPOINT: self._endpoint}
            self._mlflow.update_current_trace(
                tags=tags,
                client_request_id=self._ctx.request_id,
                user=self._ctx.user_email or self._ctx.user,
                model_id=self._tracer.model_id,
            )
            self._tracer.remember(self._ctx.request_id, self.trace_id, self._ctx.user)
        except Exception:
            self._fail("tagging")
        return self

    def set_outputs(self, outputs: Any) -> None:
        if self._span is None:
            return
        try:
            self._span.set_outputs(encodable_tree(outputs))
        except Exception:
            self._fail("recording outputs of")

    def set_error(self, code: str, message: str) -> None:
        if self._span is None:
            return
        try:
            self._span.set_attribute("mlflow_app_agent.error_code", code)
            self._span.set_attribute("mlflow_app_agent.error_message", encodable_tree(message))
            self._span.set_status("ERROR")
        except Exception:
            self._fail("recording an error on")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cm, self._cm = self._cm, None
        if cm is None:
            return
        try:
            cm.__exit__(exc_type, exc, tb)
        except BaseException as raised:
            if raised is not exc:
                self._fail("closing")
                return
        if self._tracer.export == "sync":  # MLflow wrote it inside __exit__
            self._tracer.counts.add("written")

    def _fail(self, what: str) -> None:
        import sys

        error = sys.exc_info()[1]
        logger.warning(
            "%s the trace of request %s failed (%s); the request goes on",
            what.capitalize(),
            self._ctx.request_id,
            f"{type(error).__name__}: {str(error)[:200]}" if error else "unknown error",
        )
        if what != "starting":
            return  # keep the span so __exit__ still ends it
        cm, self._cm, self._span = self._cm, None, None
        if cm is not None:
            try:
                cm.__exit__(None, None, None)
            except Exception:
                pass


def _pinned_destination(mlflow: Any) -> Any:
    """Where traces go, looked up once: the experiment named by ``MLFLOW_EXPERIMENT_ID`` /
    ``MLFLOW_EXPERIMENT_NAME``, else MLflow's current (default) experiment; ``None`` leaves
    the choice to MLflow at each trace."""
    import os

    from mlflow.entities.trace_location import MlflowExperimentLocation

    client = mlflow.MlflowClient()
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if experiment_id:
        client.get_experiment(experiment_id)  # fails loudly (in the log) if it is wrong
        return MlflowExperimentLocation(experiment_id=experiment_id)
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if name:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            return MlflowExperimentLocation(experiment_id=experiment.experiment_id)
        return None  # MLflow creates it at the first trace
    # Otherwise MLflow asks its default-experiment providers at every trace start (each probe
    # a failed import: ~0.15 ms on the loop). In a server that answer cannot change after the
    # agent module (which may call mlflow.set_experiment) has loaded, so ask once.
    from mlflow_app_agent._mlflow_compat import default_experiment_id

    experiment_id = default_experiment_id()
    return MlflowExperimentLocation(experiment_id=experiment_id) if experiment_id else None
