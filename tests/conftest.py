"""Hypothesis profiles for this repo's tests: "ci" (derandomized, no deadline) when the
``CI`` env var is set, else "dev". Select one explicitly with ``--hypothesis-profile``."""

import os
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile("ci", derandomize=True, max_examples=50, print_blob=True, **_COMMON)
settings.register_profile("dev", max_examples=25, **_COMMON)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


# --- a real MLflow sqlite store, created once per session (schema migrations cost ~1 s) ---
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _session_tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> "Callable[[Path], Path]":
    """``empty_store(path)`` puts a migrated, empty MLflow sqlite store at ``path`` (a copy of
    one made once per session), so that a server started on a new store does not spend its
    first second, twice (server and trace writer), on MLflow's schema migrations."""
    import shutil

    import mlflow

    template = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{template}").search_experiments(max_results=1)

    def seed(path: Path) -> Path:
        if not path.exists():
            shutil.copyfile(template, path)
        return path

    return seed


@pytest.fixture
def tracking_uri(_session_tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real sqlite tracking + registry store, active for this test (env and client)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _session_tracking_uri)
    mlflow.set_tracking_uri(_session_tracking_uri)
    return _session_tracking_uri


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A registered-model name no other test uses (the store is shared per session)."""
    import re
    import uuid

    return re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)[:40] + "-" + uuid.uuid4().hex[:6]


@pytest.fixture(autouse=True)
def _restore_registry_uri() -> object:
    """``mlflow.set_registry_uri`` sets a global *and* ``MLFLOW_REGISTRY_URI`` in os.environ;
    a test that calls it must not point later tests (or their subprocesses) at its store."""
    import os
    import sys

    before = os.environ.get("MLFLOW_REGISTRY_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    else:
        os.environ["MLFLOW_REGISTRY_URI"] = before
    utils = sys.modules.get("mlflow.tracking._model_registry.utils")
    if utils is not None:
        utils._registry_uri = None  # type: ignore[attr-defined]


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist otherwise hands out the files with the most tests first (--loadscope-reorder),
    # which would undo the slow-first order below.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files holding ``slow`` tests first, then files with ``e2e`` tests, then the rest, each
    file kept whole and in its own order. Serially this only reorders; on several workers (README:
    ``-n 3 --dist loadfile``) the long files start first, so none is left for the end while
    the other workers idle."""
    rank: dict[object, int] = {}
    for item in items:
        mark = 0 if item.get_closest_marker("slow") else 1 if item.get_closest_marker("e2e") else 2
        rank[item.path] = min(rank.get(item.path, 2), mark)
    items.sort(key=lambda item: rank[item.path])  # stable: files and tests keep their order


def _trace_writers() -> set[int]:
    """This process's ``trace_writer`` children (Linux /proc; empty elsewhere)."""
    import os
    from pathlib import Path

    me, found = os.getpid(), set()
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and b"mlflow_app_agent.server.trace_writer" in (
                    entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture(scope="module", autouse=True)
def _no_trace_writer_outlives_its_module() -> object:
    """In-process servers with process trace export start a writer child of this process.
    One still running 10 s after its module's fixtures are gone (the known issue-14
    regression: it then spins at full CPU and ignores SIGTERM) is killed here, so it cannot
    slow the rest of the suite. Tests that check the writer's own shutdown still see it."""
    import os
    import signal
    import time

    before = _trace_writers()
    yield
    deadline = time.monotonic() + 10
    while (left := _trace_writers() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError, PermissionError):
            pass
