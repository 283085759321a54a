"""Project templates for ``mlflow-app-agent init``: a minimal echo agent and a tool-calling
agent, each with config, pinned requirements, tests, a logging notebook and a README."""

from __future__ import annotations

from mlflow_app_agent.templates.scaffolder import TemplateInfo, list_templates, scaffold

__all__ = ["TemplateInfo", "list_templates", "scaffold"]
