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


def test_activation_is_process_wide() -> None:
    cfg.activate_config({"a": 1})
    seen: list[Any] = []
    t = threading.Thread(target=lambda: seen.append(cfg.get_config()))
    t.start()
    t.join()
    assert seen == [{"a": 1}]


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
