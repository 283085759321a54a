"""docs/authoring.md shows the framework agents the matrix tests, word for word: each
"Framework agents" code block is its agent file without the module docstring."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "authoring.md"


def _without_docstring(path: Path) -> str:
    text = path.read_text()
    return text[text.index('"""', 3) + 3:].lstrip("\n")


@pytest.mark.parametrize("heading, agent_file", [
    ("### LangGraph", "langgraph_agent.py"),
    ("### OpenAI Agents SDK", "openai_agents_agent.py"),
])
def test_the_docs_wrapper_is_the_tested_agent_file(heading: str, agent_file: str) -> None:
    doc = DOC.read_text()
    section = doc[doc.index(heading + "\n"):]
    block = re.search(r"```python\n(.*?)```", section, re.S)
    assert block is not None
    assert block.group(1) == _without_docstring(HERE / agent_file)
