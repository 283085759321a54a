"""Module-level lazy attributes (PEP 562): heavy modules load on first use of a name."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, namespace: dict[str, Any], names: Mapping[str, str]
) -> Callable[[str], Any]:
    """A ``__getattr__`` for ``package`` that imports ``names[attr]`` on first access and
    caches the value in ``namespace`` (the package's globals)."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    return __getattr__
