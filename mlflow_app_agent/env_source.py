"""The environment as pydantic-settings reads it, for the two settings classes (the server's
:class:`~mlflow_app_agent.server.settings.ServerSettings` and the agent's
:class:`~mlflow_app_agent.agent_config_env.AgentConfigOverrides`): ``os.environ``, or the
mapping a caller passes (tests, ``from_env(env)``) for the duration of one construction."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from pydantic_settings import EnvSettingsSource

_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "mlflow_app_agent_environ", default=None
)


def current_environ() -> Mapping[str, str]:
    """The mapping being read: the one given to :func:`reading`, else ``os.environ``."""
    env = _ENVIRON.get()
    return os.environ if env is None else env


@contextmanager
def reading(env: Mapping[str, str] | None) -> Iterator[None]:
    """``with reading(env): Settings()`` reads ``env`` instead of ``os.environ``."""
    token = _ENVIRON.set(env)
    try:
        yield
    finally:
        _ENVIRON.reset(token)


class EnvSource(EnvSettingsSource):
    """pydantic-settings' env source over :func:`current_environ`."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = current_environ()
        if self.case_sensitive:
            return dict(env)
        return {k.lower(): v for k, v in env.items()}
