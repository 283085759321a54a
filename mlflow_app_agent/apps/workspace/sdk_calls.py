"""databricks-sdk plumbing shared by ``deploy`` and ``check-auth``: the client from the SDK's
standard auth, and SDK errors turned into messages that name the call and the permission."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow_app_agent.errors import DeployError, MlflowAppAgentError


def workspace_client(profile: str | None = None, *,
                     error: type[MlflowAppAgentError] = DeployError, **config: Any) -> Any:
    """``WorkspaceClient`` from the SDK's standard auth (env, profile, OAuth M2M); ``config``
    sets other Config fields such as ``http_timeout_seconds``. No credentials -> ``error``."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    from mlflow_app_agent._version import __version__

    try:
        cfg = Config(profile=profile, product="mlflow-app-agent", product_version=__version__,
                     **config)
    except ValueError as exc:  # no usable auth configuration; the message holds no secret
        raise error(f"no Databricks credentials: {exc}") from None
    return WorkspaceClient(config=cfg)


_CONFIG_SUFFIX = re.compile(r"\. (?:Config|Env): .*$", re.S)


def sdk_message(exc: BaseException) -> str:
    """The server's message, without the SDK's appended ``. Config: host=..., token=***``."""
    return _CONFIG_SUFFIX.sub("", str(exc)).strip() or type(exc).__name__


@contextmanager
def calling(call: str, need: str, after: str = "") -> Iterator[None]:
    """Turn SDK errors into a DeployError that names the call and the permission it needs."""
    from databricks.sdk.errors import DatabricksError, PermissionDenied, Unauthenticated
    from requests import RequestException

    try:
        yield
    except PermissionDenied as exc:
        raise DeployError(f"{call} was refused (403 {exc.error_code or 'PERMISSION_DENIED'}: "
                          f"{sdk_message(exc)}). The caller needs {need}.{after}") from None
    except Unauthenticated as exc:
        raise DeployError(f"{call}: the workspace rejected the credentials (401: "
                          f"{sdk_message(exc)}); check "
                          "the profile, DATABRICKS_HOST and the token or OAuth client."
                          f"{after}") from None
    except DatabricksError as exc:
        code = exc.error_code or type(exc).__name__
        raise DeployError(f"{call} failed ({code}: {sdk_message(exc)}).{after}") from None
    except (TimeoutError, RequestException) as exc:  # the SDK's retries ran out
        raise DeployError(f"{call}: no answer from the workspace ({sdk_message(exc)}); check "
                          f"DATABRICKS_HOST (or the profile's host) and the network.{after}"
                          ) from None
