"""Create a new agent project from a template (``mlflow-app-agent init``).

Templates live as package data under ``templates/project-files/<template>/``. Every file is
copied; files ending in ``.tmpl`` have placeholders filled and the suffix dropped (template sources
are ``.py.tmpl`` so linters, type checkers and pytest in this repository leave them alone),
and ``dot-<name>`` becomes ``.<name>`` (wheels drop dotfiles from globbed package data).
``requirements.in`` / ``requirements-dev.in`` list package names; the generated
``requirements*.txt`` pin each to the version installed where ``init`` runs, so the project
and its logged model use exactly what was tested.

The project is written into a temporary sibling directory and renamed into place, so a
failed ``init`` leaves nothing behind, and an existing non-empty directory is never touched.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from mlflow_app_agent._version import __version__
from mlflow_app_agent.errors import TargetExistsError, TemplateError

# Not a Python identifier, so setuptools treats the tree as plain package data (no
# "importable package absent from packages" warnings, no risk of it being dropped).
FILES_ROOT = Path(__file__).parent / "project-files"
TEMPLATE_SUFFIX = ".tmpl"
DOT_PREFIX = "dot-"
# Files every template gets (CI workflow, AGENTS.md, register.py); no template.json, so it
# is not a template itself.
COMMON_DIR = "_common"
# Directories never copied from a template (caches from running its tests in place).
_SKIP = {"__pycache__", ".pytest_cache", ".hypothesis", "mlruns"}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_PLACEHOLDER_RE = re.compile(r"__MAA_[A-Z_]+__")
# The toolkit itself is pinned to this version, not looked up (it may be an editable install).
_SELF = "mlflow-app-agent"


@dataclasses.dataclass(frozen=True)
class TemplateInfo:
    name: str
    description: str
    path: Path


def list_templates() -> dict[str, TemplateInfo]:
    """The available templates by name, from each template's ``template.json``."""
    out: dict[str, TemplateInfo] = {}
    if not FILES_ROOT.is_dir():
        return out
    for path in sorted(FILES_ROOT.iterdir()):
        meta = path / "template.json"
        if path.is_dir() and meta.is_file():
            data = json.loads(meta.read_text(encoding="utf-8"))
            out[path.name] = TemplateInfo(path.name, str(data.get("description", "")), path)
    return out


def default_name(dest: str | os.PathLike[str]) -> str:
    """An agent name from the target directory's name (``my agent`` -> ``my-agent``)."""
    base = Path(dest).resolve().name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-_")
    if not slug or not slug[0].isalpha():
        slug = f"agent-{slug}" if slug else "agent"
    return slug[:63]


def scaffold(
    dest: str | os.PathLike[str],
    template: str = "echo",
    *,
    name: str | None = None,
) -> list[Path]:
    """Create a project from ``template`` at ``dest`` (which must not exist or be empty).

    Returns the created files, relative to ``dest``. Raises :class:`TemplateError` for an
    unknown template or bad name, :class:`TargetExistsError` if ``dest`` has content.
    """
    templates = list_templates()
    info = templates.get(template)
    if info is None:
        raise TemplateError(
            f"unknown template {template!r}; choose one of: {', '.join(sorted(templates))}"
        )
    target = Path(dest)
    agent_name = name if name is not None else default_name(target)
    if not _NAME_RE.match(agent_name):
        raise TemplateError(
            f"agent name {agent_name!r} must start with a letter and use only letters, digits, "
            "'-' and '_' (at most 63 characters)"
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TargetExistsError(f"{target} already exists and is not empty; choose a new directory")
    values = _placeholders(agent_name, template)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.init-", dir=target.parent))
    try:
        created = _render_tree(info.path, staging, values)
        if (FILES_ROOT / COMMON_DIR).is_dir():
            created += _render_tree(FILES_ROOT / COMMON_DIR, staging, values)
        created += _write_requirements(info.path, staging)
        # mkdtemp makes the directory private (0700); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        if target.exists():
            target.rmdir()  # empty (checked above): replace it atomically
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(created)


def _placeholders(agent_name: str, template: str) -> dict[str, str]:
    return {
        "__MAA_AGENT_NAME__": agent_name,
        "__MAA_MODULE_NAME__": agent_name.replace("-", "_"),
        "__MAA_TEMPLATE__": template,
        "__MAA_TOOLKIT_VERSION__": __version__,
        # a Databricks App name: 2-30 lowercase letters, digits and '-'
        "__MAA_APP_NAME__": _app_name(agent_name),
    }


def _app_name(agent_name: str) -> str:
    """A Databricks App name for the agent: 2-30 lowercase letters, digits and '-'."""
    slug = re.sub(r"[^a-z0-9-]+", "-", agent_name.lower()).strip("-")[:30].strip("-")
    return slug if len(slug) >= 2 else f"{slug or 'agent'}-app"


def _render_tree(src: Path, dst: Path, values: dict[str, str]) -> list[Path]:
    created: list[Path] = []
    for root, dirs, files in os.walk(src):
        # Dot-entries are tool caches (.ruff_cache, ...): template dotfiles are "dot-<name>".
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("."))
        rel_root = Path(root).relative_to(src)
        for file_name in sorted(files):
            if file_name.startswith(".") or file_name.endswith((".in", ".pyc")):
                continue
            if rel_root == Path(".") and file_name == "template.json":
                continue
            out_name = file_name
            if out_name.startswith(DOT_PREFIX):
                out_name = "." + out_name[len(DOT_PREFIX):]
            rendered = out_name.endswith(TEMPLATE_SUFFIX)
            if rendered:
                out_name = out_name[: -len(TEMPLATE_SUFFIX)]
            rel_out = Path(*[("." + part[len(DOT_PREFIX):]) if part.startswith(DOT_PREFIX)
                             else part for part in rel_root.parts]) / out_name
            out_path = dst / rel_out
            out_path.parent.mkdir(parents=True, exist_ok=True)
            source = Path(root) / file_name
            if rendered:
                out_path.write_text(_fill(source, values), encoding="utf-8")
            else:
                shutil.copyfile(source, out_path)
            created.append(rel_out)
    return created


def _fill(source: Path, values: dict[str, str]) -> str:
    text = source.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(key, value)
    left = _PLACEHOLDER_RE.search(text)
    if left:
        raise TemplateError(f"template file {source.name} uses unknown placeholder {left.group()}")
    return text


def _write_requirements(src: Path, dst: Path) -> list[Path]:
    created = []
    for spec in sorted(src.glob("requirements*.in")):
        lines = [
            "# Pinned by `mlflow-app-agent init` to the versions installed when it ran.",
        ]
        for raw in spec.read_text(encoding="utf-8").splitlines():
            entry = raw.split("#", 1)[0].strip()
            if not entry:
                continue
            lines.append(entry if entry.startswith("-") else pin(entry))
        out = dst / (spec.stem + ".txt")
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        created.append(Path(out.name))
    return created


def pin(requirement: str) -> str:
    """``name`` -> ``name==<installed version>`` (``name`` alone if it is not installed);
    a requirement that already has a version specifier is kept as written."""
    if re.search(r"[=<>!~;\[@ ]", requirement):
        return requirement
    if requirement == _SELF:
        return f"{_SELF}=={__version__}"
    try:
        return f"{requirement}=={importlib.metadata.version(requirement)}"
    except importlib.metadata.PackageNotFoundError:
        return requirement
