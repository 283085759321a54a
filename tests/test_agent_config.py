"""Model configuration: log-time validation, activation, env overrides at read time."""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path
from typing import Any

import pydantic
import pytest

from mlflow_app_agent import agent_config as cfg
from mlflow_app_agent.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Any:
    import os

    for name in list(os.environ):
        if name.startswith(cfg.ENV_PREFIX) or name == cfg.ENV_JSON:
            monkeypatch.delenv(name)
    cfg.deactivate_config()
    yield
    cfg.deactivate_config()


BASE = {
    "llm": {"endpoint_name": "my-llm", "temperature": 0.1, "max_tokens": 256},
    "system_prompt": "Be brief.",
    "tools": {"enabled": ["calculator"], "settings": {"calculator": {"precision": 4}}},
}


class Custom(cfg.AgentConfig):
    greeting: str = "hi"


# --- load_model_config ---------------------------------------------------------------------


def test_load_dict_returns_deep_copy() -> None:
    source = {"a": {"b": [1, 2]}}
    out = cfg.load_model_config(source)
    assert out == source
    assert out is not None
    out["a"]["b"].append(3)
    assert source["a"]["b"] == [1, 2]


def test_load_none_is_none() -> None:
    assert cfg.load_model_config(None) is None


def test_load_yaml_and_json_files(tmp_path: Path) -> None:
    import yaml

    y = tmp_path / "config.yaml"
    y.write_text(yaml.safe_dump(BASE))
    j = tmp_path / "config.json"
    j.write_text(json.dumps(BASE))
    assert cfg.load_model_config(y) == BASE
    assert cfg.load_model_config(str(j)) == BASE
    empty = tmp_path / "empty.yml"
    empty.write_text("# nothing yet\n")
    assert cfg.load_model_config(empty) == {}


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load_model_config(tmp_path / "nope.yaml")


def test_load_bad_yaml_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("llm:\n  endpoint_name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c.yaml: invalid YAML at line \d+"):
        cfg.load_model_config(bad)


def test_load_bad_json_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ConfigError, match="invalid JSON at line 2"):
        cfg.load_model_config(bad)


def test_load_rejects_non_mapping(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        cfg.load_model_config(f)
    with pytest.raises(ConfigError, match="dict or the path"):
        cfg.load_model_config(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"llm": {"client": object()}}, "llm.client"),
        ({"tools": {"enabled": ["a", {1, 2}]}}, "tools.enabled.1"),
        ({"x": float("nan")}, "x"),
        ({"when": datetime.date(2024, 1, 1)}, "when"),
    ],
)
def test_load_rejects_non_json_naming_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        cfg.load_model_config(data)


def test_load_rejects_non_string_keys() -> None:
    with pytest.raises(ConfigError, match="key 1 under 'llm' must be a string"):
        cfg.load_model_config({"llm": {1: "x"}})


def test_yaml_date_is_named(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("release: 2024-01-01\n")
    with pytest.raises(ConfigError, match="'release' holds a date"):
        cfg.load_model_config(f)


@pytest.mark.parametrize(
    "data",
    [
        {"llm": {"api_key": "sk-123"}},
        {"tools": {"settings": {"search": {"password": "p"}}}},
        {"DATABRICKS_TOKEN": "dapi123"},
        {"client_secret": "x"},
    ],
)
def test_load_refuses_secrets(data: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="looks like a secret") as info:
        cfg.load_model_config(data)
    # The message names the key but never repeats the value.
    for value in ("sk-123", "dapi123"):
        assert value not in str(info.value)


def test_load_allows_secret_references_and_token_counts() -> None:
    data = {"llm": {"max_tokens": 10, "api_key_env": "LLM_API_KEY"}, "secret_scope": "s"}
    assert cfg.load_model_config(data) == data


def test_load_validates_schema_naming_key() -> None:
    with pytest.raises(ConfigError, match=r"config key 'llm\.temperature'.*less than or equal"):
        cfg.load_model_config({"llm": {"temperature": 5}}, schema=cfg.AgentConfig)
    with pytest.raises(ConfigError, match=r"config key 'llm\.endpoint_nme'.*Extra inputs"):
        cfg.load_model_config({"llm": {"endpoint_nme": "x"}}, schema=cfg.AgentConfig)
    assert cfg.load_model_config(BASE, schema=cfg.AgentConfig) == BASE


# --- activation and get_config -------------------------------------------------------------


def test_get_config_without_activation_is_empty() -> None:
    assert cfg.get_config() == {}
    assert isinstance(cfg.get_config(cfg.AgentConfig), cfg.AgentConfig)


def test_activate_then_get() -> None:
    cfg.activate_config(BASE)
    assert cfg.is_config_active()
    got = cfg.get_config()
    assert got == BASE
    got["llm"]["endpoint_name"] = "mutated"
    assert cfg.get_config()["llm"]["endpoint_name"] == "my-llm"
    model = cfg.get_config(cfg.AgentConfig)
    assert model.llm.endpoint_name == "my-llm"
    assert model.tools.is_enabled("calculator") and not model.tools.is_enabled("genie")


def test_activation_context_manager_restores() -> None:
    cfg.activate_config({"a": 1})
    with cfg.activate_config({"a": 2}):
        assert cfg.get_config() == {"a": 2}
    assert cfg.get_config() == {"a": 1}


def test_activation_is_not_process_wide() -> None:
    # Activation is the current context's: a thread started without a copy of it does not see
    # it (no module-level state), the caller's own thread still does.
    cfg.activate_config({"a": 1})
    seen: list[Any] = []
    t = threading.Thread(target=lambda: seen.append(cfg.is_config_active()))
    t.start()
    t.join()
    assert seen == [False] and cfg.get_config() == {"a": 1}


def _reporting_agent(name: str) -> Any:
    from mlflow_app_agent import Agent

    agent = Agent(name)

    def answer() -> dict[str, Any]:
        text = json.dumps({"config": cfg.get_config(), "thread": threading.get_ident()})
        return {"type": "message", "id": "1", "role": "assistant",
                "content": [{"type": "output_text", "text": text}]}

    @agent.invoke_method
    def invoke(request: Any) -> dict[str, Any]:
        return {"output": [answer()]}

    return agent


def _seen(response: dict[str, Any]) -> dict[str, Any]:
    return json.loads(response["output"][0]["content"][0]["text"])


REQ = {"input": [{"role": "user", "content": "hi"}]}


def test_a_loaded_agent_owns_its_config_in_every_thread_it_runs_in() -> None:
    import anyio

    from mlflow_app_agent.authoring import reduce_stream

    first, second = _reporting_agent("first"), _reporting_agent("second")
    first.bind_model_config({"who": "first"})
    second.bind_model_config({"who": "second"})
    assert first.model_config == {"who": "first"}
    assert _seen(first.invoke(REQ))["config"] == {"who": "first"}
    assert _seen(reduce_stream(list(second.stream(REQ))))["config"] == {"who": "second"}
    assert not cfg.is_config_active()  # nothing left set in the caller

    async def both() -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []

        async def one(agent: Any) -> None:
            # sync invoke runs in an anyio worker thread; astream drives it through
            # threaded_iter's worker: both see the agent's config, not the other's
            results.append(_seen(await agent.ainvoke(REQ)))
            events = [e async for e in agent.astream(REQ)]
            results.append(_seen(reduce_stream(events)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, first)
            tg.start_soon(one, second)
        return results

    results = anyio.run(both)
    main_thread = threading.get_ident()
    assert sorted(r["config"]["who"] for r in results) == ["first"] * 2 + ["second"] * 2
    assert all(r["thread"] != main_thread for r in results)  # really other threads
    assert not cfg.is_config_active()


def test_an_unbound_agent_sees_the_callers_config() -> None:
    agent = _reporting_agent("dev")
    assert _seen(agent.invoke(REQ))["config"] == {}
    with cfg.activate_config({"during": "log-time check"}):
        assert _seen(agent.invoke(REQ))["config"] == {"during": "log-time check"}
    agent.bind_model_config(None)  # a model logged without a config: the dev fallback
    assert agent.model_config is None and _seen(agent.invoke(REQ))["config"] == {}


def test_activate_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError):
        cfg.activate_config(["a"])  # type: ignore[arg-type]


def test_development_config_used_only_when_nothing_active(tmp_path: Path) -> None:
    dev = tmp_path / "config.yaml"
    dev.write_text("system_prompt: from-dev\n")
    assert cfg.get_config(development_config=dev) == {"system_prompt": "from-dev"}
    cfg.activate_config({"system_prompt": "logged"})
    assert cfg.get_config(development_config=dev)["system_prompt"] == "logged"
    cfg.activate_config(None)  # model logged without a config: dev file is the fallback
    assert cfg.get_config(development_config=dev)["system_prompt"] == "from-dev"
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.get_config(development_config=tmp_path / "gone.yaml")


# --- environment overrides -----------------------------------------------------------------


def test_env_per_key_overrides_nested_and_parses_json(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.activate_config(BASE)
    monkeypatch.setenv("AGENT_CONFIG__LLM__ENDPOINT_NAME", "prod-llm")
    monkeypatch.setenv("AGENT_CONFIG__LLM__TEMPERATURE", "0.7")
    monkeypatch.setenv("AGENT_CONFIG__TOOLS__ENABLED", '["calculator", "whoami"]')
    monkeypatch.setenv("AGENT_CONFIG__SYSTEM_PROMPT", "Be kind.")
    got = cfg.get_config()
    assert got["llm"] == {"endpoint_name": "prod-llm", "temperature": 0.7, "max_tokens": 256}
    assert got["tools"]["enabled"] == ["calculator", "whoami"]
    assert got["system_prompt"] == "Be kind."


def test_env_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.activate_config(BASE)
    assert cfg.get_config(cfg.AgentConfig).llm.endpoint_name == "my-llm"
    monkeypatch.setenv("AGENT_CONFIG__LLM__ENDPOINT_NAME", "other")
    assert cfg.get_config(cfg.AgentConfig).llm.endpoint_name == "other"
    monkeypatch.delenv("AGENT_CONFIG__LLM__ENDPOINT_NAME")
    assert cfg.get_config(cfg.AgentConfig).llm.endpoint_name == "my-llm"


def test_env_key_matches_existing_key_case_insensitively(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.activate_config({"Greeting": "hi", "nested": {"MixedCase": 1}})
    monkeypatch.setenv("AGENT_CONFIG__GREETING", "hello")
    monkeypatch.setenv("AGENT_CONFIG__NESTED__MIXEDCASE", "2")
    monkeypatch.setenv("AGENT_CONFIG__NEW__KEY", "v")
    assert cfg.get_config() == {"Greeting": "hello", "nested": {"MixedCase": 2}, "new": {"key": "v"}}


def test_env_json_merges_and_per_key_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.activate_config(BASE)
    monkeypatch.setenv(
        "AGENT_CONFIG_JSON", json.dumps({"llm": {"temperature": 0.9, "top_p": 0.5}})
    )
    monkeypatch.setenv("AGENT_CONFIG__LLM__TEMPERATURE", "0.3")
    llm = cfg.get_config()["llm"]
    assert llm == {"endpoint_name": "my-llm", "temperature": 0.3, "max_tokens": 256, "top_p": 0.5}


def test_env_parent_then_child(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.activate_config(BASE)
    monkeypatch.setenv("AGENT_CONFIG__LLM", '{"endpoint_name": "a", "temperature": 0.4}')
    monkeypatch.setenv("AGENT_CONFIG__LLM__ENDPOINT_NAME", "b")
    llm = cfg.get_config()["llm"]
    assert llm["endpoint_name"] == "b" and llm["temperature"] == 0.4 and llm["max_tokens"] == 256


def test_numeric_env_value_for_string_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CONFIG__LLM__ENDPOINT_NAME", "123")
    assert cfg.get_config(cfg.AgentConfig).llm.endpoint_name == "123"


def test_env_error_names_key_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.activate_config(BASE)
    monkeypatch.setenv("AGENT_CONFIG__LLM__TEMPERATURE", "warm")
    with pytest.raises(ConfigError) as info:
        cfg.get_config(cfg.AgentConfig)
    msg = str(info.value)
    assert "config key 'llm.temperature'" in msg
    assert "set by env AGENT_CONFIG__LLM__TEMPERATURE" in msg
    monkeypatch.delenv("AGENT_CONFIG__LLM__TEMPERATURE")
    monkeypatch.setenv("AGENT_CONFIG_JSON", '{"llm": {"max_tokens": -1}}')
    with pytest.raises(ConfigError, match=r"'llm\.max_tokens' \(set by env AGENT_CONFIG_JSON\)"):
        cfg.get_config(cfg.AgentConfig)


def test_env_typo_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CONFIG__LLM__TEMPRATURE", "0.2")
    with pytest.raises(ConfigError, match=r"'llm\.temprature' \(set by env .*Extra inputs"):
        cfg.get_config(cfg.AgentConfig)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("AGENT_CONFIG_JSON", "{not json", "AGENT_CONFIG_JSON is not valid JSON"),
        ("AGENT_CONFIG_JSON", "[1]", "must hold a JSON object"),
        ("AGENT_CONFIG__LLM____X", "1", "empty key segment"),
        ("AGENT_CONFIG__SYSTEM_PROMPT__X", "1", "'system_prompt' is a str, not a mapping"),
    ],
)
def test_bad_env_is_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, match: str
) -> None:
    cfg.activate_config(BASE)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=match):
        cfg.get_config()


def test_custom_schema_subclass(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg.activate_config({"greeting": "yo"})
    assert cfg.get_config(Custom).greeting == "yo"
    monkeypatch.setenv("AGENT_CONFIG__GREETING", "hey")
    assert cfg.get_config(Custom).greeting == "hey"


def test_validate_config_rejects_non_model() -> None:
    with pytest.raises(ConfigError, match="pydantic BaseModel"):
        cfg.validate_config({}, dict)  # type: ignore[type-var]


def test_render_prompt() -> None:
    c = cfg.AgentConfig(prompt_templates={"greet": "Hello {name}"})
    assert c.render_prompt("greet", name="Ann") == "Hello Ann"
    with pytest.raises(ConfigError, match="'prompt_templates.other' is not set"):
        c.render_prompt("other")
    with pytest.raises(ConfigError, match="cannot be filled"):
        c.render_prompt("greet")


def test_config_schema_of() -> None:
    class Holder:
        config_schema = Custom

    assert cfg.config_schema_of(Holder()) is Custom
    assert cfg.config_schema_of(object()) is None
    Holder.config_schema = dict  # type: ignore[assignment]
    with pytest.raises(ConfigError):
        cfg.config_schema_of(Holder())


def test_error_messages_do_not_echo_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CONFIG__LLM__MAX_TOKENS", '"very-sensitive-looking-value"')
    with pytest.raises(ConfigError) as info:
        cfg.get_config(cfg.AgentConfig)
    assert "very-sensitive" not in str(info.value)


def test_pydantic_is_public_dependency() -> None:
    # AgentConfig is a plain pydantic model: agents can nest it or subclass it.
    assert issubclass(cfg.AgentConfig, pydantic.BaseModel)
