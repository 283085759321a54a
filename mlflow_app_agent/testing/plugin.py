"""pytest plugin (entry point ``pytest11``): ``pytest --agent-model-uri models:/bot/3``.

It is loaded into every pytest run of every project that installs this package, so it
imports nothing but pytest here and does nothing unless ``--agent-model-uri`` or
``--agent-url`` is given. Then it

* adds one test per contract property (``agent_contract[invoke]``, ``[stream]``,
  ``[consistency]``, ``[malformed]``), each failing with its minimal counterexample;
* provides the ``agent_target`` fixture for writing one's own properties::

      from hypothesis import given
      from mlflow_app_agent.testing import responses_requests

      @given(request=responses_requests())
      def test_answers_in_english(agent_target, request):
          response = agent_target.invoke(request)
          ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

_TARGET_KEY = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlflow-app-agent", "agent contract validation (mlflow-app-agent)")
    group.addoption(
        "--agent-model-uri",
        default=None,
        metavar="URI",
        help="validate this agent (models:/name/version, models:/name@alias, runs:/..., "
        "or a local model / app dir) with auto-generated property tests",
    )
    group.addoption(
        "--agent-url",
        default=None,
        metavar="URL",
        help="validate the agent server running at this URL (e.g. http://127.0.0.1:8000)",
    )
    group.addoption(
        "--agent-max-examples",
        type=int,
        default=50,
        metavar="N",
        help="generated requests per property (default 50)",
    )
    group.addoption(
        "--agent-nondeterministic",
        action="store_true",
        default=False,
        help="the agent is not deterministic (e.g. calls an LLM): skip stream-equals-invoke",
    )
    group.addoption(
        "--agent-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="bound on each invoke/stream call (default 30)",
    )


def _location(config: pytest.Config) -> str | None:
    uri = config.getoption("agent_model_uri", None)
    url = config.getoption("agent_url", None)
    if uri and url:
        raise pytest.UsageError("give --agent-model-uri or --agent-url, not both")
    return uri or url  # type: ignore[no-any-return]


def _target(config: pytest.Config) -> Any:
    """The agent under test, resolved once per session (loading a model takes seconds)."""
    cached = config.stash.get(_TARGET_KEY, None)
    if cached is None:
        from mlflow_app_agent.testing.targets import resolve_target

        location = _location(config)
        try:
            target = resolve_target(location, timeout=config.getoption("agent_timeout"))
            ping = getattr(target, "ping", None)
            if ping is not None:
                ping()
            cached = ("ok", target)
            config.add_cleanup(target.close)
        except Exception as exc:  # every property item reports the same load error
            cached = ("error", exc)
        config.stash[_TARGET_KEY] = cached
    kind, value = cached
    if kind == "error":
        assert isinstance(value, BaseException)
        raise value
    return value


@pytest.fixture(scope="session")
def agent_target(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The agent given by ``--agent-model-uri`` / ``--agent-url`` as a
    :class:`~mlflow_app_agent.testing.targets.Target` (``invoke``, ``stream``,
    ``post_raw``); tests using it are skipped when neither option is given."""
    if _location(pytestconfig) is None:
        pytest.skip("no agent given: pass --agent-model-uri URI or --agent-url URL")
    yield _target(pytestconfig)


class AgentPropertyItem(pytest.Item):
    """One contract property of the agent under test, run by hypothesis."""

    def __init__(self, *, prop: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prop = prop

    def runtest(self) -> None:
        from mlflow_app_agent.errors import ValidationFailure
        from mlflow_app_agent.testing.properties import run_property, run_untraced

        config = self.config
        if self.prop == "consistency" and config.getoption("agent_nondeterministic"):
            pytest.skip("the agent is declared non-deterministic (--agent-nondeterministic)")
        target = _target(config)
        result = run_untraced(
            lambda: run_property(
                target, self.prop, max_examples=config.getoption("agent_max_examples")
            ),
            pause=not target.is_server,
        )
        if not result.passed:
            raise ValidationFailure(f"{target.description}\n{result.format()}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from mlflow_app_agent.errors import MlflowAppAgentError

        if isinstance(excinfo.value, MlflowAppAgentError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"agent contract: {self.prop}"


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so those apply to our items too
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    if _location(config) is None:
        return
    from mlflow_app_agent.testing.properties import PROPERTIES

    for prop in PROPERTIES:
        name = f"agent_contract[{prop}]"
        items.append(AgentPropertyItem.from_parent(session, name=name, nodeid=name, prop=prop))
