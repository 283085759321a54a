"""Serving a registered version (``models:/name/1``) from a real sqlite registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo" / "agent.py"


@pytest.mark.e2e
def test_serve_registered_version_answers_openai_and_reports_git(
    serve: Any, tracking_uri: str, unique_name: str
) -> None:
    from openai import OpenAI

    from mlflow_app_agent.flavor import log_model

    info = log_model(str(ECHO), name="agent", registered_model_name=unique_name,
                     pip_requirements=["mlflow-app-agent"])
    server = serve(f"models:/{unique_name}/1", env={
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_APP_AGENT_TRACING": "true",
    })
    client = OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    assert client.responses.create(model=unique_name, input="hi there").output_text == "hi there"
    streamed = client.responses.create(model=unique_name, input="a b", stream=True)
    assert [e.type for e in streamed][-1] == "response.completed"

    details = httpx.get(server.url + "/agent/info").json()
    assert details["model_uri"] == f"models:/{unique_name}/1"
    assert details["registered_model"] == {"name": unique_name, "version": "1"}
    assert details["model_id"] == info.model_id
    assert details["tracing"]["model_id"] == info.model_id
    assert details["git"]["commit"] and len(details["git"]["commit"]) == 40
    assert "dirty" in details["git"]
