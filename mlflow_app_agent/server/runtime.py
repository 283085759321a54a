"""Per-app runtime state: the agent (loaded in a thread at start-up when given a location),
the thread limiter, the tracer and the background MLflow warm-up. Lives on ``app.state``."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread

from mlflow_app_agent.errors import ExtensionError, MlflowAppAgentError, ModelLoadError
from mlflow_app_agent.extensions import AgentExtensions
from mlflow_app_agent.model.load import LoadedAgent
from mlflow_app_agent.server.deadlines import Deadlines
from mlflow_app_agent.server.errors import ErrorPolicy
from mlflow_app_agent.server.logs import lifecycle
from mlflow_app_agent.server.redact import Redactor, app_secrets
from mlflow_app_agent.server.settings import ServerSettings
from mlflow_app_agent.server.source import is_deferred, resolve
from mlflow_app_agent.server.tracing import Tracer

logger = logging.getLogger("mlflow_app_agent.server")
_NO_EXTENSIONS = AgentExtensions()


class NotReadyError(MlflowAppAgentError):
    code = "not_ready"
    status_code = 503


class Runtime:
    def __init__(self, source: Any, settings: ServerSettings) -> None:
        self.settings = settings
        self.source = source
        self.served: LoadedAgent | None = None
        self.load_error: str | None = None
        #: the load succeeded but a start-up hook of the agent failed (code extension_error)
        self.startup_failed = False
        #: seconds the agent took to load (None until loaded)
        self.load_seconds: float | None = None
        self.started_at = time.time()
        # who answers: with several app instances (or --workers) behind one URL, each
        # process has its own counters, trace cap and caches; this id tells them apart
        self.instance_id = uuid.uuid4().hex[:12]
        self.tracer = Tracer(
            enabled=settings.tracing,
            sample_ratio=settings.trace_sample_ratio,
            max_per_second=settings.trace_max_per_second,
            export=settings.trace_export,
        )
        self.errors = ErrorPolicy(Redactor(app_secrets(app_dirs=_app_dirs(source))),
                                  settings.error_detail)
        #: the body-read and request timeouts of this app's requests
        self.deadlines = Deadlines()
        #: what the load waits on (shown by /ready), e.g. "fetching models:/x/3 from ..."
        self.loading_status: list[str] = ["starting"]
        self._limiter: anyio.CapacityLimiter | None = None
        self._loading: asyncio.Future[Any] | None = None
        self._warm: asyncio.Future[Any] | None = None
        #: more start-up work that neither /ready nor a request waits for (e.g. building
        #: the metrics exporters): run in a thread once the warm-up is done
        self.warm_ups: list[Callable[[], None]] = []
        self._extra_warm: asyncio.Future[Any] | None = None
        #: awaited with the loaded agent before it is served (the agent's start-up hooks
        #: and extensions); an ExtensionError keeps the app up with /ready at 503
        self.on_loaded: Callable[[LoadedAgent], Awaitable[None]] | None = None
        self._pending: LoadedAgent | None = None
        if not is_deferred(source):
            t0 = time.perf_counter()
            served = resolve(source)
            self.load_seconds = time.perf_counter() - t0
            if served.agent.server_extensions.startup:
                self._pending = served  # served once its start-up hooks ran
            else:
                self._set_served(served)

    @property
    def extensions(self) -> AgentExtensions:
        """The served agent's server extensions (none before it is served)."""
        if self.served is None:
            return _NO_EXTENSIONS
        return self.served.agent.server_extensions

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.max_concurrency)
        return self._limiter

    @property
    def ready(self) -> bool:
        return self.served is not None

    def _set_served(self, served: LoadedAgent) -> None:
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
                pending = self._pending
                if pending is None:
                    t0 = time.perf_counter()
                    served = await anyio.to_thread.run_sync(self._resolve_bounded)
                    self.load_seconds = time.perf_counter() - t0
                else:
                    served = pending
                if self.on_loaded is not None:
                    await self.on_loaded(served)
                self._set_served(served)
            except Exception as exc:
                self.startup_failed = isinstance(exc, ExtensionError)
                self.load_error = self.errors.redactor(
                    str(exc) if isinstance(exc, MlflowAppAgentError)
                    else f"{type(exc).__name__}: {exc}")
                # Our own diagnosis (a typo'd URI, a missing file) is the whole story; keep
                # the traceback for failures raised by the agent's code or a library.
                expected = isinstance(exc, MlflowAppAgentError) and exc.__cause__ is None
                detail = "" if expected else "\n" + self.errors.redactor(
                    "".join(traceback.format_exception(exc)).rstrip())
                logger.error("loading the agent from %s failed: %s%s", self.source,
                             self.load_error, detail)
                return
        loaded = self.served
        assert loaded is not None
        lifecycle("model_loaded",
                  f"agent {loaded.agent.name!r} loaded in {self.load_seconds or 0:.2f} s",
                  agent=loaded.agent.name,
                  model_uri=self.errors.redactor.location(loaded.model_uri) if loaded.model_uri else None,
                  registered_model=loaded.registered_name,
                  version=loaded.registered_version, model_id=loaded.model_id,
                  load_seconds=round(self.load_seconds or 0.0, 3))
        # After the agent is ready (so /ready is not slowed down): import MLflow for request
        # validation and tracing in the background.
        self._warm = asyncio.ensure_future(anyio.to_thread.run_sync(self._import_heavy))
        await self._warm
        lifecycle("ready", "ready: serving requests", tracing=self.tracer.enabled,
                  trace_export=self.tracer.export)
        if self.warm_ups:  # no request waits for these
            self._extra_warm = asyncio.ensure_future(
                anyio.to_thread.run_sync(self._run_warm_ups))

    def _resolve_bounded(self) -> LoadedAgent:
        """Load the agent; calls to a tracking/registry server get the registry budget, and
        what is waited on is logged and shown by /ready."""
        source = str(self.source)
        if not _URI.match(source) or source.startswith("file:"):
            self.loading_status[0] = f"loading {source}"
            return resolve(self.source)
        from mlflow_app_agent import registry_budget

        host = registry_budget.public_host(_registry_uri(source))
        timeout, retries = self.settings.registry_timeout, self.settings.registry_retries
        with registry_budget.bounded(timeout, retries), registry_budget.progress(
            source, host, retries, self.loading_status
        ):
            logger.info("fetching %s from %s (each call: %g s timeout, %d retries)", source,
                        host, timeout, retries)
            return resolve(self.source)

    def _import_heavy(self) -> None:
        import mlflow.types.responses  # noqa: F401  (request validation)

        self.tracer.warm_up()

    def _run_warm_ups(self) -> None:
        for warm_up in self.warm_ups:
            try:
                warm_up()
            except Exception:  # done again where it is needed, which reports its own error
                logger.debug("warm-up %r failed", warm_up, exc_info=True)

    async def agent(self) -> LoadedAgent:
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
        if self._extra_warm is not None and not self._extra_warm.done():
            await asyncio.wait([self._extra_warm], timeout=5)  # a thread: it cannot be cut
        # Bounded inside (the flush limit), so this thread always finishes, and the counts
        # and the one summary line are complete before the process exits.
        await anyio.to_thread.run_sync(self.tracer.shutdown, self.settings.trace_flush_timeout)


def not_ready_error(runtime: Runtime) -> MlflowAppAgentError:
    if runtime.load_error and runtime.startup_failed:
        return ExtensionError(f"the agent's start-up failed: {runtime.load_error}",
                              status_code=503)
    if runtime.load_error:
        return ModelLoadError(f"the agent failed to load: {runtime.load_error}", status_code=503)
    return NotReadyError(f"the agent is still loading ({runtime.loading_status[0]})")


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def _registry_uri(source: str) -> str | None:
    import mlflow

    if source.startswith("models:"):
        return mlflow.get_registry_uri()
    return mlflow.get_tracking_uri()


def _app_dirs(source: Any) -> list[Path]:
    """Where an ``app.yaml`` naming the app's secret env vars may be: the working directory
    (Databricks Apps runs the command there) and a served app directory."""
    dirs = [Path.cwd()]
    if isinstance(source, (str, Path)) and Path(str(source)).is_dir():
        dirs.append(Path(str(source)))
    return dirs
