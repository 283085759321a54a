"""The MLflow private names ``mlflow_app_agent._mlflow_compat`` relies on still exist with the
signatures it calls them with. A failure here names what an MLflow release changed; widen
the pin in setup.cfg only after adapting the compat module."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from mlflow_app_agent import _mlflow_compat as compat

PACKAGE = Path(compat.__file__).parent


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_exporter_private_methods_keep_their_signatures() -> None:
    cls = compat.exporter_class()
    for name in compat.EXPORTER_PRIVATE_NAMES:
        if name in ("_async_queue", "_client"):
            continue  # instance attributes: checked on an instance below
        assert hasattr(cls, name), f"MlflowV3SpanExporter.{name} is gone"
    assert _params(cls._log_spans)[:4] == ["self", "experiment_id", "spans", "workspace"]
    assert _params(cls._log_trace)[:4] == ["self", "trace", "prompts", "workspace"]
    assert _params(cls.__init__)[:2] == ["self", "tracking_uri"]


def test_an_exporter_instance_has_the_queue_and_client_the_hook_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "true")
    exporter = compat.exporter_class()(tracking_uri=f"sqlite:///{tmp_path / 'c.db'}")
    queue = compat.export_queue(exporter)
    assert queue is not None, "MlflowV3SpanExporter._async_queue is gone"
    for method in ("put", "flush", "activate", "is_active"):
        assert callable(getattr(queue, method, None)), f"the export queue lost {method}()"
    assert "terminate" in _params(queue.flush)
    assert compat.exporter_tracking_uri(exporter).startswith("sqlite:")
    compat.set_export_queue(exporter, None)
    assert compat.export_queue(exporter) is None


def test_the_export_task_shape_the_hook_reads() -> None:
    from mlflow.tracing.export.async_export_queue import Task

    cls = compat.exporter_class()
    fields = _params(Task)
    assert fields[:3] == ["handler", "args", "error_msg"]
    assert callable(getattr(Task, "handle", None))
    exporter = object.__new__(cls)
    trace_task = Task(handler=exporter._log_trace, args=(None, [], None))
    spans_task = Task(handler=exporter._log_spans, args=("0", [], None))
    assert compat.task_kind(trace_task, cls) == "trace"
    assert compat.task_kind(spans_task, cls) == "spans"
    assert not compat.trace_task_has_prompts(trace_task)


def test_the_thread_queue_still_reads_max_workers_at_activation() -> None:
    queue = compat.new_thread_queue(max_workers=1)
    for name in compat.QUEUE_PRIVATE_NAMES:
        assert hasattr(queue, name), f"AsyncTraceExportQueue.{name} is gone"
    assert not queue.is_active()
    source = inspect.getsource(type(queue)._set_up_threads)
    assert "self._max_workers" in source


def test_exporter_reports_failures_on_the_logger_the_hook_watches() -> None:
    from mlflow.tracing.export import mlflow_v3

    assert mlflow_v3._logger.name == compat.EXPORTER_LOGGER
    assert "Failed to send trace" in inspect.getsource(mlflow_v3.MlflowV3SpanExporter._log_trace)


def test_private_functions_keep_their_signatures() -> None:
    from mlflow.models.resources import _ResourceBuilder
    from mlflow.models.utils import _convert_llm_ndarray_to_list
    from mlflow.pyfunc import PyFuncModel
    from mlflow.tracing.provider import _get_trace_exporter
    from mlflow.tracking.fluent import _get_experiment_id
    from mlflow.utils.model_utils import _add_code_from_conf_to_system_path

    assert _params(_get_trace_exporter) == []
    assert _params(_get_experiment_id) == []
    assert _params(_add_code_from_conf_to_system_path)[:3] == ["local_path", "conf", "code_key"]
    assert _params(_ResourceBuilder.from_resources)[:1] == ["resources"]
    assert _params(_convert_llm_ndarray_to_list) == ["data"]
    assert "_model_impl" in inspect.getsource(PyFuncModel.__init__)


def test_the_compat_module_is_the_only_one_using_mlflow_private_names() -> None:
    private = re.compile(r"from mlflow(?:\.\w+)* import _\w|\bmlflow(?:\.\w+)*\._[a-z]|_private"
                         r"|\._(?:async_queue|log_spans|log_trace|model_impl)\b|exporter\._client")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_mlflow_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private.search(line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert offenders == []
