"""The local backend's worker: one thread, one model, one lock (see llm/backends/local/__init__.py).

Every model load and every generation runs in the runner's single worker thread, so the event loop never blocks on
llama.cpp and concurrent calls are served one after the other. Generation always streams; each chunk goes to the
caller through a `TokenBridge`, and a closed bridge stops generation at the next token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from llm.accounting.usage import usage_dict
from llm.backends.local.bridge import TokenBridge
from llm.errors import LLMConfigError

__all__ = ["Chunks", "ModelRunner", "counting_llama_class"]

T = TypeVar("T")
#: A bridge of llama chunks: OpenAI chat-chunk dicts, the last one choice-less with the usage.
Chunks = TokenBridge[dict[str, Any]]


def counting_llama_class() -> type[Any]:
    """`llama_cpp.Llama`, counting the prompt and generated tokens of each generation (streams report no usage).

    Generated tokens are counted like the library's own non-streamed usage: end-of-generation tokens excluded.
    """
    import llama_cpp

    class CountingLlama(llama_cpp.Llama):  # type: ignore[misc]  # llama_cpp is typed as Any (pyproject)
        prompt_tokens = 0
        completion_tokens = 0

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
            self.prompt_tokens, self.completion_tokens = len(tokens), 0
            vocab = llama_cpp.llama_model_get_vocab(self.model)
            for token in super().generate(tokens, *args, **kwargs):
                if not llama_cpp.llama_vocab_is_eog(vocab, token):
                    self.completion_tokens += 1
                yield token

    return CountingLlama


class ModelRunner:
    """Owns the model and the one worker thread every load and generation runs in.

    Args:
        path: the GGUF file.
        threads: CPU threads for prompt processing and generation.
        context: the context window in tokens.
    """

    def __init__(self, path: Path, threads: int, context: int) -> None:
        self.path = path
        self.threads = threads
        self.context = context
        self.model: Any = None
        self.lock = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="scout-local-llm")
        self.bridges: set[Chunks] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the worker thread, awaited from the loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def start(self, params: dict[str, Any], bridge: Chunks) -> None:
        """Queue a generation into `bridge` (served after the ones already queued)."""
        self.bridges.add(bridge)
        self.executor.submit(self.produce, params, bridge).add_done_callback(lambda _: self.bridges.discard(bridge))

    def load(self) -> Any:
        """Load the model once (worker thread only).

        Raises:
            LLMConfigError: when the file is not a model llama.cpp can load.
        """
        with self.lock:
            if self.model is None:
                try:
                    self.model = counting_llama_class()(
                        model_path=str(self.path), n_ctx=self.context, n_threads=self.threads,
                        n_threads_batch=self.threads, verbose=False,
                    )
                except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
                    raise LLMConfigError(f"could not load the GGUF model {str(self.path)!r}: {exc}") from exc
            return self.model

    def produce(self, params: dict[str, Any], bridge: Chunks) -> None:
        """Generate into `bridge` until the answer ends or the consumer leaves (worker thread only).

        Ends the bridge in every case, with the exception if one was raised: the consumer raises it as a typed error.
        """
        error: BaseException | None = None
        try:
            if not bridge.closed:  # else the caller left while this job was queued
                model = self.load()
                with self.lock:
                    self._generate(model, params, bridge)
        except BaseException as exc:  # handed over, not swallowed
            error = exc
        bridge.finish(error)

    @staticmethod
    def _generate(model: Any, params: dict[str, Any], bridge: Chunks) -> None:
        chunks = model.create_chat_completion(**params, stream=True)
        try:
            for chunk in chunks:
                if not bridge.put(chunk):
                    if not bridge.closed:
                        raise TimeoutError("the consumer stopped reading the stream")
                    return  # closed: stop generating now
        finally:
            chunks.close()
        bridge.put({"choices": [], "usage": usage_dict(model.prompt_tokens, model.completion_tokens)})

    def unload(self) -> None:
        """Free the model (worker thread only)."""
        with self.lock:
            if self.model is not None:
                self.model.close()
                self.model = None

    async def close(self) -> None:
        """Stop every generation, free the model and the thread."""
        for bridge in list(self.bridges):
            bridge.close()
        try:
            await self.run(self.unload)
        except RuntimeError:  # the worker is gone (interpreter exit joins executor threads first): free it here
            self.unload()
        finally:
            self.executor.shutdown(wait=False, cancel_futures=True)
