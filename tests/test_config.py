"""Settings: every seed variable is read, .env is read without touching os.environ, keys are secret."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from llm import config as config_module
from llm.config import DEFAULT_MODELS, ScoutConfig, get_config, reload_config, variables
from llm.errors import LLMConfigError

SEED_VARIABLES = {
    "SCOUT_LLM_DEFAULT_BACKEND": ("OpenAI", lambda c: c.llm_routing.default_backend == "openai"),
    "SCOUT_LLM_TIMEOUT": ("42", lambda c: c.llm.timeout == 42.0),
    "SCOUT_LLM_RETRY_ATTEMPTS": ("5", lambda c: c.llm.retry_attempts == 5),
    "SCOUT_LLM_RETRY_DELAY": ("0.25", lambda c: c.llm.retry_delay == 0.25),
    "SCOUT_OPENAI_API_KEY": ("12345", lambda c: c.api.openai_api_key.get_secret_value() == "12345"),
    "SCOUT_OPENAI_MODEL": ("gpt-4o", lambda c: c.llm.openai_model == "gpt-4o"),
    "SCOUT_ANTHROPIC_API_KEY": ("sk-ant-test", lambda c: c.api.anthropic_api_key.get_secret_value() == "sk-ant-test"),
    "SCOUT_ANTHROPIC_MODEL": ("claude-opus-4-1", lambda c: c.llm.anthropic_model == "claude-opus-4-1"),
    "SCOUT_GEMINI_API_KEY": ("gm-test", lambda c: c.api.gemini_api_key.get_secret_value() == "gm-test"),
    "SCOUT_GEMINI_MODEL": ("gemini-2.5-pro", lambda c: c.llm.gemini_model == "gemini-2.5-pro"),
    "SCOUT_OLLAMA_BASE_URL": ("http://gpu:11434", lambda c: c.api.ollama_base_url == "http://gpu:11434"),
    "SCOUT_OLLAMA_MODEL": ("qwen3:8b", lambda c: c.llm.ollama_model == "qwen3:8b"),
    "SCOUT_OPENAI_BASE_URL": ("http://proxy/v1", lambda c: c.api.openai_base_url == "http://proxy/v1"),
    "SCOUT_ANTHROPIC_BASE_URL": ("http://a", lambda c: c.api.anthropic_base_url == "http://a"),
    "SCOUT_GEMINI_BASE_URL": ("http://g", lambda c: c.api.gemini_base_url == "http://g"),
    "SCOUT_DEEPSEEK_API_KEY": ("ds-test", lambda c: c.api.deepseek_api_key.get_secret_value() == "ds-test"),
    "SCOUT_LLM_DEFAULT_MODEL": ("Some-Model", lambda c: c.llm_routing.default_model == "Some-Model"),
    "SCOUT_LLM_FALLBACK_ORDER": ("claude, OpenAI", lambda c: c.llm.fallback_order == ["claude", "openai"]),
    "SCOUT_LLM_AGENT_SCREENER_BACKEND": ("Ollama", lambda c: c.llm_routing.per_agent_backend["screener"] == "ollama"),
    "SCOUT_LLM_AGENT_VALIDATOR_MODEL": ("gpt-4o", lambda c: c.llm_routing.per_agent_model["validator"] == "gpt-4o"),
    "SCOUT_LLM_AGENT_GAP_FINDER__BACKEND": (
        "claude", lambda c: c.llm_routing.per_agent_backend["gap_finder"] == "claude"
    ),
    "SCOUT_LOCAL_MODEL_PATH": ("/m.gguf", lambda c: c.llm.local_model_path == c.llm.model_for("local") == "/m.gguf"),
    "SCOUT_LOCAL_THREADS": ("2", lambda c: c.llm.local_threads == 2),
    "SCOUT_LOCAL_CONTEXT": ("8192", lambda c: c.llm.local_context == 8192),
    "SCOUT_LOCAL_ENABLED": ("false", lambda c: c.llm.local_enabled is False),
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("SCOUT_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "GOOGLE_", "DEEPSEEK_", "OLLAMA_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    config_module._config = None


@pytest.mark.parametrize("name", list(SEED_VARIABLES))
def test_every_variable_is_read(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    value, check = SEED_VARIABLES[name]
    monkeypatch.setenv(name, value)
    assert check(reload_config(env_file=None))


def test_defaults_are_current_models() -> None:
    config = reload_config(env_file=None)
    retired = {"gpt-4", "claude-3-sonnet-20240229", "gemini-pro", "llama2"}
    models = {config.llm.model_for(name) for name in DEFAULT_MODELS}
    assert models == set(DEFAULT_MODELS.values())
    assert not models & retired
    assert config.llm.timeout == 60 and config.llm.retry_attempts == 3 and config.llm.retry_delay == 1.0


def test_dotenv_is_read_without_touching_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SCOUT_OPENAI_API_KEY=from-file\nSCOUT_LLM_TIMEOUT=9\nSCOUT_LLM_AGENT_WRITER_BACKEND=claude\n")
    monkeypatch.setenv("SCOUT_LLM_TIMEOUT", "11")
    config = reload_config(env_file=env_file)
    assert config.api.openai_api_key is not None
    assert config.api.openai_api_key.get_secret_value() == "from-file"
    assert config.llm.timeout == 11.0, "the environment wins over the file"
    assert config.llm_routing.per_agent_backend == {"writer": "claude"}
    assert "SCOUT_OPENAI_API_KEY" not in os.environ


def test_get_config_is_lazy_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    config_module._config = None
    monkeypatch.setenv("SCOUT_LLM_RETRY_ATTEMPTS", "4")
    first = get_config()
    monkeypatch.setenv("SCOUT_LLM_RETRY_ATTEMPTS", "6")
    assert get_config() is first and first.llm.retry_attempts == 4
    assert reload_config().llm.retry_attempts == 6


def test_keys_are_secret_and_settable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOUT_GEMINI_API_KEY", "gm-canary-123")
    config = reload_config(env_file=None)
    config.api.openai_api_key = "sk-canary-456"  # type: ignore[assignment]
    assert isinstance(config.api.openai_api_key, SecretStr)
    for text in (repr(config), str(config), repr(config.api), str(config.model_dump())):
        assert "gm-canary-123" not in text and "sk-canary-456" not in text


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOUT_OPENAI_API_KEY", "")
    monkeypatch.setenv("SCOUT_LLM_DEFAULT_BACKEND", "  ")
    config = reload_config(env_file=None)
    assert config.api.openai_api_key is None and config.llm_routing.default_backend is None


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import llm, llm.config, llm.manager"], cwd=tmp_path, check=True)
    assert list(tmp_path.iterdir()) == []


# -- the vendors' standard variables (issue 13) -----------------------------------------------------------------------

STANDARD_VARIABLES = {
    "OPENAI_API_KEY": lambda c: c.api.openai_api_key.get_secret_value(),
    "OPENAI_BASE_URL": lambda c: c.api.openai_base_url,
    "ANTHROPIC_API_KEY": lambda c: c.api.anthropic_api_key.get_secret_value(),
    "ANTHROPIC_BASE_URL": lambda c: c.api.anthropic_base_url,
    "GEMINI_API_KEY": lambda c: c.api.gemini_api_key.get_secret_value(),
    "GOOGLE_API_KEY": lambda c: c.api.gemini_api_key.get_secret_value(),
    "DEEPSEEK_API_KEY": lambda c: c.api.deepseek_api_key.get_secret_value(),
    "OLLAMA_HOST": lambda c: c.api.ollama_base_url,
}


@pytest.mark.parametrize("name", list(STANDARD_VARIABLES))
def test_standard_variables_are_fallbacks_and_scout_wins(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    read = STANDARD_VARIABLES[name]
    monkeypatch.setenv(name, "http://vendor:1")
    assert read(reload_config(env_file=None)) == "http://vendor:1"
    scout = next(v.name for v in variables() if v.name.startswith("SCOUT_") and
                 v.setting == next(w.setting for w in variables() if w.name == name))
    monkeypatch.setenv(scout, "http://scout:2")
    assert read(reload_config(env_file=None)) == "http://scout:2"


def test_google_api_key_wins_over_gemini_api_key_as_in_google_genai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gemini")
    monkeypatch.setenv("GOOGLE_API_KEY", "google")
    assert reload_config(env_file=None).api.gemini_api_key.get_secret_value() == "google"  # type: ignore[union-attr]


@pytest.mark.parametrize(("host", "url"), [("gpu:1234", "http://gpu:1234"), ("gpu", "http://gpu:11434"),
                                           (":5000", "http://127.0.0.1:5000"), ("https://o.example", "https://o.example")])
def test_ollama_host_is_read_as_ollama_reads_it(monkeypatch: pytest.MonkeyPatch, host: str, url: str) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    assert reload_config(env_file=None).api.ollama_base_url == url


def test_standard_variables_are_read_from_dotenv_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=from-file\n")
    assert reload_config().api.anthropic_api_key.get_secret_value() == "from-file"  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("SCOUT_LLM_TIMEOUT", "abc", "SCOUT_LLM_TIMEOUT='abc' is not valid: expected seconds, a number > 0"),
    ("SCOUT_LLM_TIMEOUT", "nan", "SCOUT_LLM_TIMEOUT='nan' is not valid"),
    ("SCOUT_LLM_TIMEOUT", "-1", "SCOUT_LLM_TIMEOUT='-1' is not valid"),
    ("SCOUT_LLM_RETRY_ATTEMPTS", "100", "SCOUT_LLM_RETRY_ATTEMPTS='100' is not valid: expected a whole number"),
    ("SCOUT_LOCAL_ENABLED", "maybe", "SCOUT_LOCAL_ENABLED='maybe' is not valid: expected true or false"),
    ("OPENAI_BASE_URL", "ftp://x", "OPENAI_BASE_URL='ftp://x' is not valid: expected an http(s) URL"),
    ("OPENAI_BASE_URL", "http://a b/v1", "OPENAI_BASE_URL='http://a b/v1' is not valid: expected an http(s) URL"),
    ("OLLAMA_HOST", "a b", "OLLAMA_HOST='a b' is not valid: expected an http(s) URL, or host[:port]"),
])
def test_an_invalid_value_names_the_variable_and_the_form(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                          expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(LLMConfigError) as caught:
        reload_config(env_file=None)
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("url", ["mysql://scout:hunter2-pw@cache:6379/0", "redis//scout:hunter2-pw@cache"])
def test_an_invalid_url_never_shows_its_password(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("SCOUT_LLM_REDIS_URL", url)
    with pytest.raises(LLMConfigError, match="SCOUT_LLM_REDIS_URL") as caught:
        reload_config(env_file=None)
    assert "hunter2-pw" not in str(caught.value)


def test_constraints_hold_on_assignment_too() -> None:
    config = ScoutConfig()
    with pytest.raises(LLMConfigError, match=r"LLMSettings.timeout=-1 is not valid: expected seconds"):
        config.llm.timeout = -1
    with pytest.raises(LLMConfigError, match="retry_attempts"):
        config.llm.retry_attempts = 0
    with pytest.raises(LLMConfigError, match="an http"):
        config.api.openai_base_url = "not a url"
    assert config.llm.timeout == 60 and config.llm.retry_attempts == 3 and config.api.openai_base_url is None


def test_backend_aliases_are_resolved_in_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOUT_LLM_DEFAULT_BACKEND", "Anthropic")
    monkeypatch.setenv("SCOUT_LLM_FALLBACK_ORDER", "google, openai")
    monkeypatch.setenv("SCOUT_LLM_AGENT_WRITER_BACKEND", "anthropic")
    config = reload_config(env_file=None)
    assert config.llm_routing.default_backend == "claude"
    assert config.llm.fallback_order == ["gemini", "openai"]
    assert config.llm_routing.per_agent_backend == {"writer": "claude"}
    assert config.llm.model_for("anthropic") == DEFAULT_MODELS["claude"]


def test_every_setting_is_declared_once_with_its_variables() -> None:
    rows = variables()
    names = [row.name for row in rows]
    assert len(names) == len(set(names))
    for name in ("SCOUT_OPENAI_API_KEY", "OPENAI_API_KEY", "SCOUT_LLM_TIMEOUT", "OLLAMA_HOST", "SCOUT_PROMPTS_DIR"):
        assert name in names
    assert names.index("SCOUT_OPENAI_API_KEY") < names.index("OPENAI_API_KEY")
    assert all(row.expected for row in rows)
