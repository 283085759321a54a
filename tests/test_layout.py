"""The allowed imports between the package's layers (drawn in docs/design-notes.md), read
from the source with ``ast``: every ``import`` counts, at module level or inside a function
(lazy imports are still dependencies); ``if TYPE_CHECKING:`` blocks do not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlflow_app_agent"

#: module -> layer; the first matching prefix wins (longest prefixes first)
LAYERS = {
    "mlflow_app_agent.cli": "cli",
    "mlflow_app_agent.cli_common": "cli",  # what every command shares (MODEL, errors)
    "mlflow_app_agent.quickstart": "cli",  # the quickstart, log and info commands
    "mlflow_app_agent.serve": "cli",  # python -m mlflow_app_agent.serve
    "mlflow_app_agent.apps.cli": "cli",
    "mlflow_app_agent.apps.workspace.cli": "cli",
    "mlflow_app_agent.server.cli": "cli",
    "mlflow_app_agent.testing.cli": "cli",
    "mlflow_app_agent.templates.cli": "cli",
    "mlflow_app_agent.flavor": "model",
    "mlflow_app_agent.model": "model",
    "mlflow_app_agent.server": "server",
    "mlflow_app_agent.apps.build": "apps.build",
    "mlflow_app_agent.apps.local": "apps.local",
    "mlflow_app_agent.apps.workspace": "apps.workspace",
    "mlflow_app_agent.apps": "apps",  # the facade: materialize, verify, deploy, check_auth
    "mlflow_app_agent.testing": "testing",
    "mlflow_app_agent.templates": "templates",
    "mlflow_app_agent": "core",  # authoring, errors, resources, agent_config, provenance, ...
}

#: layer -> the layers it may import (besides itself)
ALLOWED = {
    "core": set(),
    "model": {"core"},
    "server": {"core", "model"},
    "apps.build": {"core", "model"},
    "apps.local": {"core", "model", "apps.build"},
    "apps.workspace": {"core", "model", "apps.build", "apps"},
    # the facade reaches apps.workspace only by name (``_lazy``), not by an import
    "apps": {"core", "model", "apps.build"},
    "testing": {"core", "model", "server"},
    "templates": {"core"},
    "cli": {"core", "model", "server", "apps.build", "apps.local", "apps.workspace", "apps",
            "testing", "templates"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> str:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(module: str) -> list[tuple[str, bool]]:
    """(imported module of this package, at module level?) for each import in ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                assert child.level == 0, f"{module}: use absolute imports"
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    found.append((full if full in MODULES else child.module, top))
            nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            visit(child, top and not nested)

    visit(tree, True)
    return [(name, top) for name, top in found if name.split(".")[0] == "mlflow_app_agent"]


def test_every_module_is_in_a_known_layer() -> None:
    assert set(ALLOWED) == set(LAYERS.values())
    for module in MODULES:
        assert layer_of(module) in ALLOWED


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module: str) -> None:
    here = layer_of(module)
    wrong = sorted({name for name, _ in imports_of(module)
                    if layer_of(name) != here and layer_of(name) not in ALLOWED[here]})
    assert not wrong, f"{module} ({here}) may not import {wrong} (see docs/design-notes.md)"


def test_the_rules_the_issue_names() -> None:
    # spelled out, so loosening ALLOWED above cannot silently drop them
    assert not ALLOWED["model"] & {"server", "apps", "apps.build", "apps.local",
                                   "apps.workspace", "testing", "templates"}
    assert "server" not in ALLOWED["apps.build"]
    assert [layer for layer, allowed in ALLOWED.items()
            if allowed & {"testing", "templates"}] == ["cli"]


def test_no_import_cycles_between_layers() -> None:
    edges = {layer: set(allowed) for layer, allowed in ALLOWED.items()}
    seen: dict[str, str] = {}

    def walk(layer: str, path: list[str]) -> None:
        if seen.get(layer) == "done":
            return
        assert seen.get(layer) != "active", f"cycle: {' -> '.join([*path, layer])}"
        seen[layer] = "active"
        for nxt in edges[layer]:
            walk(nxt, [*path, layer])
        seen[layer] = "done"

    for layer in edges:
        walk(layer, [])


def test_no_import_cycles_at_import_time() -> None:
    """Module-level imports form no cycle, so any module can be imported first."""
    graph = {m: {n for n, top in imports_of(m) if top and n in MODULES and n != m}
             for m in MODULES}
    state: dict[str, str] = {}

    def walk(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "active", f"cycle: {' -> '.join([*path, module])}"
        state[module] = "active"
        for nxt in sorted(graph[module]):
            walk(nxt, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        walk(module, [])
