"""What a materialized Databricks Apps source directory is: its file names and limits.

Every module that writes, reads, verifies, uploads or serves an app directory takes these
names from here, so the layout is defined once::

    app.yaml        the command Databricks Apps runs, and env from declared resources
    MANIFEST.json   source URI, registry version, git facts, sha256 of every other file
    model/          the registered version's artifacts, verbatim
    wheels/         this toolkit's wheel (it is not on the package index)
    pyproject.toml + uv.lock   uv mode (default), or
    requirements.txt           pip mode
"""

from __future__ import annotations

from pathlib import Path

MANIFEST_FILE = "MANIFEST.json"
MODEL_DIR = "model"
WHEELS_DIR = "wheels"
APP_YAML = "app.yaml"
APP_YAML_NAMES = ("app.yaml", "app.yml")
REQUIREMENTS_FILE = "requirements.txt"
"""pip mode: Databricks Apps pip-installs it (it wins when present)."""
PYPROJECT_FILE = "pyproject.toml"
UV_LOCK_FILE = "uv.lock"
"""uv mode (the default): no requirements.txt; Apps runs uv on these two."""
MAX_FILE_BYTES = 10 * 1024 * 1024
"""Databricks Apps refuses source files larger than 10 MiB."""


def install_mode(path: Path) -> str | None:
    """How Databricks Apps installs ``path``: ``"pip"`` when requirements.txt exists (it
    wins), ``"uv"`` with pyproject.toml and uv.lock, else None."""
    if (path / REQUIREMENTS_FILE).is_file():
        return "pip"
    if (path / PYPROJECT_FILE).is_file() and (path / UV_LOCK_FILE).is_file():
        return "uv"
    return None


def is_app_dir(path: Path) -> bool:
    """A materialized app directory: a manifest beside a model directory."""
    return (path / MANIFEST_FILE).is_file() and (path / MODEL_DIR / "MLmodel").is_file()


def value_from_env_names(path: Path) -> set[str]:
    """The env vars an app directory's ``app.yaml`` fills from resources (``valueFrom``):
    secret values at run time. Empty when there is no readable ``app.yaml``."""
    for name in APP_YAML_NAMES:
        if (path / name).is_file():
            import yaml

            try:
                doc = yaml.safe_load((path / name).read_text()) or {}
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                return set()
            env = doc.get("env") if isinstance(doc, dict) else None
            return {str(e["name"]) for e in env or [] if isinstance(e, dict)
                    and "name" in e and "valueFrom" in e}
    return set()


__all__ = [
    "APP_YAML",
    "APP_YAML_NAMES",
    "MANIFEST_FILE",
    "MAX_FILE_BYTES",
    "MODEL_DIR",
    "PYPROJECT_FILE",
    "REQUIREMENTS_FILE",
    "UV_LOCK_FILE",
    "WHEELS_DIR",
    "install_mode",
    "is_app_dir",
    "value_from_env_names",
]
