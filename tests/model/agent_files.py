"""Agent files for the loader's tests (tests/model/) and the server's (tests/server/)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mlflow_app_agent import Agent

HELLO = {"input": [{"role": "user", "content": "hello there"}]}

#: an agent file; ``.format(name=..., label=...)``: the Agent's variable and its answer
AGENT_FILE = """
from mlflow_app_agent import Agent

{name} = Agent({label!r})


@{name}.invoke_method
def _invoke(request):
    return {{"output": [{{"type": "message", "id": "m1", "role": "assistant",
                         "content": [{{"type": "output_text", "text": {label!r}}}]}}]}}
"""


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def answer(agent: Agent) -> str:
    return str(agent.invoke(HELLO)["output"][0]["content"][0]["text"])
