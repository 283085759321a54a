"""``get_context()`` as on a Databricks runtime: an object whose attributes are the REPL
context (``mlflowGitRepoUrl``, ``mlflowGitRepoCommit``, ...), read from the JSON in
``DBRUNTIME_STAND_IN_CONTEXT``; ``None`` when that is unset (not in a notebook)."""

from __future__ import annotations

import json
import os
import types


def get_context() -> types.SimpleNamespace | None:
    raw = os.environ.get("DBRUNTIME_STAND_IN_CONTEXT")
    if not raw:
        return None
    return types.SimpleNamespace(**json.loads(raw))
