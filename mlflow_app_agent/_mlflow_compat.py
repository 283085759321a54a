"""The one module that touches MLflow's private names (``_x`` attributes, ``_private``
functions). Everything else in the package calls these wrappers, so an MLflow release that
renames or re-signs one of them breaks here, and ``tests/test_mlflow_compat.py`` says which.

MLflow is imported lazily inside each function: importing this module costs nothing.
Supported MLflow range: see ``install_requires`` in ``setup.cfg``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

# --- trace export hook ----------------------------------------------------------------------
# MLflow's span exporter (``MlflowV3SpanExporter``) hands each finished trace to an async
# queue as a ``Task(handler=exporter._log_trace, args=(trace, prompts, workspace))`` and each
# batch of spans as ``Task(handler=exporter._log_spans, args=(experiment_id, spans,
# workspace))``. The server replaces that queue (``exporter._async_queue``) with its own,
# which counts traces and may forward them to a writer process.

#: the private attributes and methods of the exporter this section relies on
EXPORTER_PRIVATE_NAMES = ("_async_queue", "_client", "_log_spans", "_log_trace")
#: the private attribute of MLflow's AsyncTraceExportQueue this section relies on
QUEUE_PRIVATE_NAMES = ("_max_workers",)


def exporter_class() -> Any:
    """MLflow's span exporter class (the V3 trace schema)."""
    from mlflow.tracing.export.mlflow_v3 import MlflowV3SpanExporter

    return MlflowV3SpanExporter


def current_exporter() -> Any:
    """The span exporter of MLflow's current tracer provider, or None."""
    from mlflow.tracing.provider import _get_trace_exporter

    return _get_trace_exporter()


def export_queue(exporter: Any) -> Any:
    """The async queue the exporter puts its tasks on (None: it exports synchronously)."""
    return getattr(exporter, "_async_queue", None)


def set_export_queue(exporter: Any, queue: Any) -> None:
    exporter._async_queue = queue


def exporter_tracking_uri(exporter: Any) -> str:
    return str(exporter._client.tracking_uri)


def task_kind(task: Any, exporter_cls: Any) -> str | None:
    """``"trace"`` or ``"spans"`` for the exporter's two task kinds, else None."""
    handler = getattr(getattr(task, "handler", None), "__func__", None)
    if handler is exporter_cls._log_trace:
        return "trace"
    if handler is exporter_cls._log_spans:
        return "spans"
    return None


def trace_task_trace_id(task: Any) -> str:
    """The trace a ``trace`` task writes."""
    return str(task.args[0].info.trace_id)


def spans_task_by_trace(task: Any) -> dict[str, Any]:
    """A ``spans`` task split into one task per trace (MLflow's batch span processor hands
    the exporter spans of several traces at once)."""
    experiment_id, spans, *rest = task.args
    grouped: dict[str, list[Any]] = {}
    for span in spans:
        grouped.setdefault(str(span.trace_id), []).append(span)
    if len(grouped) == 1:
        return {next(iter(grouped)): task}
    return {trace_id: type(task)(handler=task.handler, args=(experiment_id, group, *rest),
                                 error_msg=task.error_msg)
            for trace_id, group in grouped.items()}


def trace_task_has_prompts(task: Any) -> bool:
    """Whether a trace task links prompts (``args = (trace, prompts, workspace)``)."""
    return bool(task.args[1])


def write_spans(exporter: Any, experiment_id: str, spans: Any, workspace: str | None) -> None:
    exporter._log_spans(experiment_id, spans, workspace)


def write_trace(exporter: Any, trace: Any, workspace: str | None) -> None:
    """Write one trace synchronously (no prompt links: those need the live client)."""
    exporter._log_trace(trace, [], workspace)


def flush_span_processor(timeout: float) -> None:
    """Hand the spans MLflow's span processor still holds to the exporter, waiting at most
    ``timeout`` s (MLflow 3.x may batch finished spans in a background thread before the
    exporter sees them). Only this layer: the export queue is flushed by its owner."""
    from mlflow.tracing.provider import _get_span_processor

    processor = _get_span_processor()
    if processor is not None and hasattr(processor, "force_flush"):
        processor.force_flush(int(timeout * 1000))


#: the logger MLflow's exporter reports a failed write on (it does not raise)
EXPORTER_LOGGER = "mlflow.tracing.export.mlflow_v3"


def new_thread_queue(max_workers: int | None = None) -> Any:
    """A fresh instance of MLflow's own in-process export queue; ``max_workers`` overrides
    ``MLFLOW_ASYNC_TRACE_LOGGING_MAX_WORKERS`` for this queue only (read at activation)."""
    from mlflow.tracing.export.async_export_queue import AsyncTraceExportQueue

    queue = AsyncTraceExportQueue()
    if max_workers is not None:
        queue._max_workers = max_workers
    return queue


# --- experiments ------------------------------------------------------------------------------


def default_experiment_id() -> str | None:
    """The experiment MLflow's fluent API would use now (active, env, or default)."""
    from mlflow.tracking.fluent import _get_experiment_id

    return _get_experiment_id()


# --- model loading ----------------------------------------------------------------------------


def add_code_paths_to_sys_path(model_dir: Path, pyfunc_conf: dict[str, Any]) -> None:
    """Put the model's logged ``code_paths`` on ``sys.path``, as MLflow's loaders do."""
    from mlflow.utils.model_utils import _add_code_from_conf_to_system_path

    _add_code_from_conf_to_system_path(str(model_dir), pyfunc_conf, code_key="code")


def raw_python_model(pyfunc_model: Any) -> Any:
    """The object a pyfunc model wraps (a ResponsesAgent for agents), or None."""
    impl = pyfunc_model._model_impl
    return impl.get_raw_model() if hasattr(impl, "get_raw_model") else None


def resources_dict(resources: list[Any]) -> Any:
    """``MLmodel``'s ``resources`` entry for a list of MLflow resource objects."""
    from mlflow.models.resources import _ResourceBuilder

    return _ResourceBuilder.from_resources(resources)


def llm_ndarray_to_list(value: Any) -> Any:
    """A pandas-row value with numpy arrays made JSON lists (pyfunc ``predict`` input)."""
    from mlflow.models.utils import _convert_llm_ndarray_to_list

    return _convert_llm_ndarray_to_list(value)


# --- model URIs -------------------------------------------------------------------------------
# ``models:/`` URIs are parsed and resolved by MLflow's own helpers, the ones MLflow uses when
# it downloads such a URI, so a location means to us exactly what it means to MLflow (names
# with quotes, spaces or ``@``; ``latest``; stages; ``models:/<model-id>``).


class ModelsUriParts(NamedTuple):
    """One of ``model_id``; ``name`` + ``version``; ``name`` + ``alias``; ``name`` + ``stage``;
    or ``name`` alone (the latest version)."""

    model_id: str | None
    name: str | None
    version: str | None
    stage: str | None
    alias: str | None


def parse_models_uri(uri: str) -> ModelsUriParts:
    """The parts of a ``models:/`` URI; raises ``MlflowException`` for a malformed one."""
    from mlflow.store.artifact.utils.models import _parse_model_uri

    parsed = _parse_model_uri(uri)
    return ModelsUriParts(parsed.model_id, parsed.name, parsed.version, parsed.stage,
                          parsed.alias)


def resolve_models_uri(client: Any, uri: str) -> tuple[str, ...]:
    """``(model_id,)`` or ``(name, version)`` for a ``models:/`` URI, resolving aliases,
    stages and ``latest`` in the registry, as MLflow does before it downloads the URI."""
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    return tuple(str(part) for part in get_model_name_and_version(client, uri))
