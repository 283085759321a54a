"""Per-app runtime state: the agent (loaded in a thread at start-up when given a location),
the thread limiter, the tracer and the background MLflow warm-up. Lives on ``app.state``."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio
import anyio.to_thread

from mlflow_app_agent.errors import MlflowAppAgentError, ModelLoadError
from mlflow_app_agent.server.logs import lifecycle
from mlflow_app_agent.server.settings import ServerSettings
from mlflow_app_agent.server.source import ServedAgent, is_deferred, resolve
from mlflow_app_agent.server.tracing import Tracer

logger = logging.getLogger("mlflow_app_agent.server")


class NotReadyError(MlflowAppAgentError):
    code = "not_ready"
    status_code = 503


class Runtime:
    def __init__(self, source: Any, settings: ServerSettings) -> None:
        self.settings = settings
        self.source = source
        self.served: ServedAgent | None = None
        self.load_error: str | None = None
        #: seconds the agent took to load (None until loaded)
        self.load_seconds: float | None = None
        self.started_at = time.time()
        self.tracer = Tracer(
            enabled=settings.tracing,
            sample_ratio=settings.trace_sample_ratio,
            max_per_second=settings.trace_max_per_second,
            export=settings.trace_export,
        )
        self._limiter: anyio.CapacityLimiter | None = None
        self._loading: asyncio.Future[Any] | None = None
        self._warm: asyncio.Future[Any] | None = None
        if not is_deferred(source):
            t0 = time.perf_counter()
            self._set_served(resolve(source))
            self.load_seconds = time.perf_counter() - t0

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.max_concurrency)
        return self._limiter

    @property
    def ready(self) -> bool:
        return self.served is not None

    def _set_served(self, served: ServedAgent) -> None:
        self.served = served
        self.tracer.model_id = served.model_id

    # --- start-up ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin loading (if needed) and warming up, without blocking the loop."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load_then_warm())

    async def _load_then_warm(self) -> None:
        if self.served is None:
            try:
                t0 = time.perf_counter()
                served = await anyio.to_thread.run_sync(resolve, self.source)
                self.load_seconds = time.perf_counter() - t0
                self._set_served(served)
            except Exception as exc:
                self.load_error = str(exc) if isinstance(exc, MlflowAppAgentError) else (
                    f"{type(exc).__name__}: {exc}"
                )
                # Our own diagnosis (a typo'd URI, a missing file) is the whole story; keep
                # the traceback for failures raised by the agent's code or a library.
                expected = isinstance(exc, MlflowAppAgentError) and exc.__cause__ is None
                logger.error("loading the agent from %s failed: %s", self.source,
                             self.load_error, exc_info=not expected)
                return
        loaded = self.served
        assert loaded is not None
        lifecycle("model_loaded",
                  f"agent {loaded.agent.name!r} loaded in {self.load_seconds or 0:.2f} s",
                  agent=loaded.agent.name, model_uri=loaded.model_uri,
                  registered_model=loaded.registered_name,
                  version=loaded.registered_version, model_id=loaded.model_id,
                  load_seconds=round(self.load_seconds or 0.0, 3))
        # After the agent is ready (so /ready is not slowed down): import MLflow for request
        # validation and tracing in the background.
        self._warm = asyncio.ensure_future(anyio.to_thread.run_sync(self._import_heavy))
        await self._warm
        lifecycle("ready", "ready: serving requests", tracing=self.tracer.enabled,
                  trace_export=self.tracer.export)

    def _import_heavy(self) -> None:
        import mlflow.types.responses  # noqa: F401  (request validation)

        self.tracer.warm_up()

    async def agent(self) -> ServedAgent:
        """The served agent, waiting for the warm-up if a request arrives during it."""
        if self._loading is None:
            self.start()
        if self.served is None:
            if self.load_error:
                raise NotReadyError(f"the agent failed to load: {self.load_error}")
            raise NotReadyError("the agent is still loading; retry when /ready answers 200")
        loading = self._loading
        if loading is not None and not loading.done():
            await asyncio.shield(loading)  # the MLflow import still running in its thread
        return self.served

    async def shutdown(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        with anyio.move_on_after(self.settings.trace_flush_timeout):
            await anyio.to_thread.run_sync(self.tracer.flush, abandon_on_cancel=True)


def not_ready_error(runtime: Runtime) -> ModelLoadError | NotReadyError:
    if runtime.load_error:
        return ModelLoadError(f"the agent failed to load: {runtime.load_error}", status_code=503)
    return NotReadyError("the agent is still loading")
