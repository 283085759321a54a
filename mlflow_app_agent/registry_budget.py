"""A time budget for the toolkit's calls to an MLflow tracking/registry server.

MLflow retries a failed HTTP call up to 7 times with a backoff factor of 2 and a 120 s
timeout per call: against an unreachable server a model load sits silent for minutes.
While the toolkit fetches a model (``serve``, ``materialize``) :func:`bounded` sets MLflow's
own ``MLFLOW_HTTP_REQUEST_*`` variables to a budget of its own — by default a 5 s timeout
per call and 3 retries (backoff 0, 2, 4 s): at most ~27 s in all — unless the user set them;
:func:`progress` logs what is being waited on, without credentials.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

logger = logging.getLogger("mlflow_app_agent.registry")

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 3
ENV_TIMEOUT = "MLFLOW_HTTP_REQUEST_TIMEOUT"
ENV_RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"
ENV_BACKOFF = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
ENV_JITTER = "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"
_ENV_LOCK = threading.Lock()


def budget_env(timeout: float, retries: int) -> dict[str, str]:
    return {
        ENV_TIMEOUT: str(max(1, math.ceil(timeout))),  # MLflow reads an int
        ENV_RETRIES: str(retries),
        ENV_BACKOFF: "1",
        ENV_JITTER: "0.5",
    }


def worst_case_seconds(timeout: float, retries: int) -> float:
    """Upper bound of one bounded call: every attempt times out, every backoff is taken."""
    backoff = sum(2 ** (i - 1) if i > 1 else 0 for i in range(1, retries + 1))
    return (retries + 1) * max(1, math.ceil(timeout)) + backoff + 0.5 * retries


@contextlib.contextmanager
def bounded(timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES) -> Iterator[None]:
    """MLflow's HTTP budget for the block; variables the user set are left alone. (The
    environment is process-wide: other threads see the budget while the block runs.)"""
    wanted = {k: v for k, v in budget_env(timeout, retries).items() if k not in os.environ}
    with _ENV_LOCK:
        os.environ.update(wanted)
    try:
        yield
    finally:
        with _ENV_LOCK:
            for key, value in wanted.items():
                if os.environ.get(key) == value:
                    del os.environ[key]


def public_host(uri: str | None) -> str:
    """Where a tracking/registry URI points, without user info, query or path."""
    if not uri:
        return "the default local store"
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")
    if parts.scheme.startswith("databricks"):
        return "databricks"
    return parts.scheme or "a local path"


class _Retries(logging.Handler):
    """Counts urllib3's 'Retrying ...' records while a fetch runs, and says so."""

    def __init__(self, what: str, host: str, retries: int) -> None:
        super().__init__(logging.WARNING)
        self.what, self.host, self.retries, self.seen = what, host, retries, 0

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Retrying"):
            self.seen += 1
            logger.warning("fetching %s from %s: retry %d of %d", self.what, self.host,
                           self.seen, self.retries)


@contextlib.contextmanager
def progress(what: str, host: str, retries: int, status: list[str] | None = None,
             every: float = 5.0) -> Iterator[None]:
    """Log retries and, every ``every`` s, that ``what`` is still being fetched; keep
    ``status[0]`` (when given) saying what is waited on."""
    retries_seen = _Retries(what, host, retries)
    pool_logger = logging.getLogger("urllib3.connectionpool")
    pool_logger.addHandler(retries_seen)
    stop = threading.Event()
    started = time.monotonic()

    def tell() -> None:
        while not stop.wait(every):
            waited = time.monotonic() - started
            text = f"fetching {what} from {host}: {waited:.0f} s"
            if retries_seen.seen:
                text += f", retry {retries_seen.seen} of {retries}"
            if status is not None:
                status[0] = text
            logger.warning("still %s", text)

    if status is not None:
        status[0] = f"fetching {what} from {host}"
    ticker = threading.Thread(target=tell, name="registry-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        pool_logger.removeHandler(retries_seen)
