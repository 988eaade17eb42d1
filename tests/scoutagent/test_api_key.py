"""Issue 10, point 4: `LLMConfig.api_key` equals its plain string (ScoutAgent's tests compare
`config.api_key == "test-key"`), works where a `str` key was passed, and never shows in a repr, a log or an error."""

from __future__ import annotations

import copy
import dataclasses
import logging
import pickle

import openai
import pytest
from pydantic import SecretStr

from llm.backends import OpenAIBackend
from llm.base import APIKey, LLMBackendType, LLMConfig, LLMRequest
from llm.errors import LLMAuthenticationError
from llm.manager import LLMManager
from tests.fakes.openai_fake import FakeOpenAI

CANARY = "sk-canary-7f3a9c1e"


def canary_config(**overrides: object) -> LLMConfig:
    return LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="gpt-4.1-mini", api_key=CANARY, **overrides)  # type: ignore[arg-type]


def test_the_key_compares_like_its_plain_string() -> None:
    config = canary_config()
    assert config.api_key == CANARY and CANARY == config.api_key and config.api_key != "other"  # noqa: SIM300
    assert config.api_key in [CANARY] and "canary" in config.api_key
    assert bool(config.api_key) and not LLMConfig(LLMBackendType.OPENAI, "m", api_key="").secret()  # type: ignore[arg-type]
    assert isinstance(config.api_key, str) and hash(config.api_key) == hash(CANARY) and {CANARY: 1}[config.api_key]
    assert config.api_key.startswith("sk-") and len(config.api_key) == len(CANARY)


def test_the_plain_value_is_one_call_away() -> None:
    config = canary_config()
    assert isinstance(config.api_key, APIKey)
    plain = config.api_key.get_secret_value()
    assert plain == CANARY and type(plain) is str
    assert config.secret() == CANARY and type(config.secret()) is str
    assert f"Bearer {config.api_key}" == f"Bearer {CANARY}"  # f-strings give the value: SDKs build headers so
    assert "Bearer " + config.api_key == f"Bearer {CANARY}" and config.api_key.encode() == CANARY.encode()


def test_the_key_never_shows_where_people_print_it() -> None:
    config = canary_config()
    logged = "%s %r" % (config.api_key, config.api_key)  # noqa: UP031  # how logging formats its arguments
    shown = [repr(config), str(config), repr(config.api_key), str(config.api_key), logged,
             repr({"key": config.api_key}), str([config.api_key]),
             repr(dataclasses.asdict(config)), repr(copy.deepcopy(config)), repr(pickle.loads(pickle.dumps(config)))]
    for text in shown:
        assert CANARY not in text
    assert str(config.api_key) == "**********" and repr(config.api_key) == "APIKey('**********')"


@pytest.mark.parametrize("given", [CANARY, SecretStr(CANARY), APIKey(CANARY)])
def test_str_secretstr_and_later_assignment_all_become_an_api_key(given: object) -> None:
    config = LLMConfig(backend_type=LLMBackendType.OPENAI, model_name="m", api_key=given)  # type: ignore[arg-type]
    assert type(config.api_key) is APIKey and config.api_key == CANARY
    config.api_key = "replaced-key"
    assert type(config.api_key) is APIKey and config.api_key == "replaced-key" and "replaced" not in repr(config)
    config.api_key = None
    assert config.api_key is None and config.secret() is None


async def test_an_sdk_client_given_the_key_where_a_str_was_passed_authenticates() -> None:
    async with FakeOpenAI(api_key=CANARY) as server:
        config = canary_config(base_url=server.base_url)
        client = openai.AsyncOpenAI(api_key=config.api_key, base_url=config.base_url, max_retries=0)
        try:
            reply = await client.chat.completions.create(model="gpt-4.1-mini",
                                                         messages=[{"role": "user", "content": "hi"}])
        finally:
            await client.close()
        assert reply.choices[0].message.content == "echo: hi"
        assert server.requests[-1].headers["authorization"] == f"Bearer {CANARY}"


async def test_the_canary_is_absent_from_every_log_repr_and_error(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeOpenAI(api_key="sk-the-right-key") as server:  # rejects the canary: 401, key masked
        backend = OpenAIBackend(canary_config(base_url=server.base_url, timeout=5, retry_attempts=1))
        manager = LLMManager(health_check_interval=None, retry_attempts=1, timeout=5)
        with caplog.at_level(logging.DEBUG):
            assert await manager.register_backend(backend)
            with pytest.raises(LLMAuthenticationError) as caught:
                await manager.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}]))
            await manager.check_health()
            health = manager.get_all_health_status()
            status = manager.get_llm_status()
            await manager.cleanup()
        assert server.count("/chat/completions") == 1
        assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"  # the key was really sent
    assert health["openai"].last_error is not None and "401" in str(caught.value)
    texts = [str(caught.value), repr(caught.value), repr(backend), repr(backend.config), repr(health), repr(status),
             repr(manager), caplog.text]
    texts += [str(arg) for record in caplog.records for arg in (record.args or ())]
    for text in texts:
        assert CANARY not in text
    assert len(caplog.records) >= 2  # real log lines were looked at
