"""A ResponsesAgent logged with plain ``mlflow.pyfunc.log_model`` (models from code).

It reports who called it through ``mlflow_app_agent.request_context()``, so tests can see
the identity the (local) Apps proxy forwarded reach an agent that is not our flavor.
"""

from __future__ import annotations

from collections.abc import Generator

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import (
    ResponsesAgentRequest,
    ResponsesAgentResponse,
    ResponsesAgentStreamEvent,
)

from mlflow_app_agent import request_context


class PlainAgent(ResponsesAgent):
    def _text(self, request: ResponsesAgentRequest) -> str:
        last = request.input[-1].model_dump() if request.input else {}
        content = last.get("content")
        return f"plain: {content} (user={request_context().user})"

    # MLflow's documented ResponsesAgent signatures differ from PythonModel's stubs
    def predict(  # type: ignore[override]
        self, request: ResponsesAgentRequest
    ) -> ResponsesAgentResponse:
        item = self.create_text_output_item(text=self._text(request), id="msg-plain")
        return ResponsesAgentResponse(output=[item])  # type: ignore[list-item]

    def predict_stream(  # type: ignore[override]
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        text = self._text(request)
        for word in text.split(" "):
            yield ResponsesAgentStreamEvent(
                **self.create_text_delta(delta=word + " ", item_id="msg-plain")
            )
        yield ResponsesAgentStreamEvent(  # type: ignore[call-arg]
            type="response.output_item.done",
            item=self.create_text_output_item(text=text, id="msg-plain"),
        )


mlflow.models.set_model(PlainAgent())
