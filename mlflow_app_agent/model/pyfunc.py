"""The ``python_function`` face of a model of this flavor: what ``mlflow.pyfunc.load_model``
returns through ``mlflow_app_agent.flavor._load_pyfunc`` (MLflow's ``loader_module``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlflow_app_agent.authoring import Agent, dump
from mlflow_app_agent.errors import ModelLoadError


def load_pyfunc(data_path: str, model_config: dict[str, Any] | None = None) -> PyfuncWrapper:
    """The pyfunc model of the agent under ``data_path`` (``<model>/data/agent``)."""
    from mlflow_app_agent.model.files import agent_from_model_dir

    model_dir = Path(data_path).resolve()
    while not (model_dir / "MLmodel").exists():
        if model_dir.parent == model_dir:
            raise ModelLoadError(f"no MLmodel above {data_path}")
        model_dir = model_dir.parent
    return PyfuncWrapper(agent_from_model_dir(model_dir, model_config))


class PyfuncWrapper:
    """``predict(dict) -> dict`` and ``predict_stream(dict) -> Iterator[dict]``; the agent is
    ``python_model`` (what ``PyFuncModel.unwrap_python_model()`` returns)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    @property
    def python_model(self) -> Agent:
        return self.agent

    def get_raw_model(self) -> Agent:
        return self.agent

    @staticmethod
    def _to_dict(model_input: Any) -> Any:
        # A DataFrame means pandas is loaded already; importing it here would make MLflow's
        # requirement inference (which records every import while it runs ``predict`` on
        # the input example) pin pandas, and numpy with it, for every agent of this flavor.
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(model_input, pandas.DataFrame):
            from mlflow_app_agent._mlflow_compat import llm_ndarray_to_list

            return {
                k: llm_ndarray_to_list(v[0])
                for k, v in model_input.to_dict(orient="list").items()
            }
        return model_input

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return dump(self.agent.invoke(self._to_dict(model_input)))

    def predict_stream(
        self, model_input: Any, params: dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        yield from self.agent.stream(self._to_dict(model_input))
