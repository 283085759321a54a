"""MLflow's AgentServer serving the benchmark agents: ``python agentserver_app.py KIND PORT``
with KIND in sleepy | echo | streamer. Tracing stays at MLflow's default (on)."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from mlflow.genai.agent_server import AgentServer, invoke, stream

sys.path.insert(0, str(Path(__file__).parent))
import agents  # noqa: E402

kind, port = sys.argv[1], int(sys.argv[2])
invoke_fn = {"sleepy": agents.sleepy_invoke, "echo": agents.echo_invoke,
             "streamer": agents.sleepy_invoke}[kind]
invoke()(invoke_fn)
if kind == "streamer":
    stream()(agents.delta_stream)

server = AgentServer("ResponsesAgent")
uvicorn.run(server.app, host="127.0.0.1", port=port, log_level="warning")
