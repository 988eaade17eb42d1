"""Blocking calls for scripts and notebooks: `SyncClient` and the process-wide `generate_sync`, `stream_sync` and
`run_sync`, with or without an event loop already running in the calling thread. Behaviour: README "Call"; how the
background loop works: README "Internals"."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import AsyncGenerator, Coroutine, Iterator
from types import TracebackType
from typing import Any, TypedDict, TypeVar, Unpack

from llm.base import LLMBackendType, LLMRequest, LLMResponse, StreamEvent
from llm.errors import LLMError, LLMValidationError
from llm.manager import LLMManager, initialize_llm_backends

__all__ = ["RequestOptions", "SyncClient", "generate_sync", "get_sync_client", "run_sync", "stream_sync"]

T = TypeVar("T")

#: Seconds that closing a client (and interpreter exit) may spend cleaning up the manager and stopping its thread.
CLOSE_TIMEOUT = 10.0

Prompt = str | list[dict[str, Any]] | LLMRequest
Backend = str | LLMBackendType | None


class RequestOptions(TypedDict, total=False):
    """Keyword settings of a sync call, when the prompt is a string or a message list (not an `LLMRequest`).

    `system` is the system prompt; `model` overrides the backend's configured model (a fallback backend that does
    not serve it uses its own); the others are the `LLMRequest` fields of the same name.
    """

    system: str
    model: str
    temperature: float
    max_tokens: int
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]


class SyncClient:
    """A blocking facade over an `LLMManager` that lives on this client's own background event loop.

    Args:
        manager: the manager to drive; a new `LLMManager()` when None. Once given to a client, use it only through
            the client (`client.run(...)`): its SDK clients are bound to the client's loop.
        configure: register the backends the settings configure (as `initialize_llm_backends`) before the first
            `generate` / `stream`; backends already registered are kept.

    Construction starts nothing; the thread starts on the first call. `close()` (or leaving the `with` block, or the
    end of the interpreter) cleans the manager up and stops the thread; a closed client refuses further calls.
    """

    def __init__(self, manager: LLMManager | None = None, *, configure: bool = True) -> None:
        self.manager = manager if manager is not None else LLMManager()
        self._configure = configure
        self._configured = False
        self._loop = _LoopThread()
        # Runs on close(), when the client is garbage-collected, or at interpreter exit, whichever comes first.
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self.manager)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "running" if self._loop.started else "idle"
        return f"SyncClient({state}, manager={self.manager!r})"

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once `close()` ran (explicitly or at exit)."""
        return not self._finalizer.alive

    def generate(
        self, prompt: Prompt, backend: Backend = None, *, fallback: bool = True, **options: Unpack[RequestOptions]
    ) -> LLMResponse:
        """The whole answer to `prompt`: a string (one user message), a list of message dicts, or an `LLMRequest`.

        Args:
            backend: the backend tried first (the default backend when None); the others remain as fallbacks
                unless `fallback=False`.
            fallback: False forbids failing over from the first backend to the others.
            **options: see `RequestOptions`; only with a string or a message list.

        Raises:
            LLMError: exactly as `LLMManager.generate` raises, the same exception object.
        """
        request = to_request(prompt, **options)
        return self.run(self._generate(request, backend, fallback))

    def stream(
        self, prompt: Prompt, backend: Backend = None, *, fallback: bool = True, **options: Unpack[RequestOptions]
    ) -> Iterator[str]:
        """The answer's text as it arrives; arguments as `generate`. Closing the iterator closes the stream."""
        request = to_request(prompt, **options)
        return self._drain(self.manager.stream_generate(request, backend, fallback=fallback))

    def stream_events(
        self, prompt: Prompt, backend: Backend = None, *, fallback: bool = True, **options: Unpack[RequestOptions]
    ) -> Iterator[StreamEvent]:
        """Typed events (`TextDelta`, `ToolCallDelta`), then one `ResponseDone` with the whole answer and usage."""
        request = to_request(prompt, **options)
        return self._drain(self.manager.stream(request, backend, fallback=fallback))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run any coroutine on this client's loop and return its result (or raise its exception).

        What the coroutine binds to a loop (a manager, SDK clients) is bound to this client's loop: keep using it
        through `run`.

        Raises:
            LLMError: the client is closed. RuntimeError: called from a coroutine on this client's own loop.
        """
        if self.closed:
            coroutine.close()
            raise LLMError("This SyncClient is closed; create a new one")
        return self._loop.call(coroutine)

    def close(self) -> None:
        """Clean up the manager (closing its SDK clients) and stop the thread. Safe to call twice."""
        self._finalizer()

    async def _generate(self, request: LLMRequest, backend: Backend, fallback: bool) -> LLMResponse:
        await self._configure_once()
        return await self.manager.generate(request, backend, fallback=fallback)

    def _drain(self, stream: AsyncGenerator[T, None]) -> Iterator[T]:
        """A blocking iterator over an async generator that runs on the client's loop, one item per step; closing the
        iterator closes the generator there. Nothing runs before the first `next()`. It holds the client, so that
        `for text in SyncClient().stream(...)` keeps the client's loop alive."""
        try:
            self.run(self._configure_once())
            while not isinstance(item := self.run(_next(stream)), _End):
                yield item
        finally:
            if self._loop.in_own_thread():  # dropped by a coroutine on the loop itself: close without waiting
                asyncio.get_running_loop().create_task(_close(stream))
            elif not self.closed:
                with contextlib.suppress(Exception):  # a failing close must not hide what ended the iteration
                    self.run(_close(stream))  # a no-op when the stream ended or failed

    async def _configure_once(self) -> None:
        if self._configure and not self._configured:
            await initialize_llm_backends(self.manager)  # safe when two threads get here at once: it locks
            self._configured = True


class _LoopThread:
    """One event loop running forever in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._loop is not None

    def in_own_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coroutine` on the loop (started if need be) from another thread."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=_run_forever, args=(self._loop,), name="llm-sync", daemon=True)
                self._thread.start()
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the loop and wait for it; an interruption while waiting cancels it there."""
        if self.in_own_thread():
            coroutine.close()
            raise RuntimeError("a blocking llm call was made on its own SyncClient loop: await the async API there")
        future = self.submit(coroutine)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: the task on the loop is cancelled too
            raise

    def stop(self, cleanup: Coroutine[Any, Any, None], timeout: float) -> None:
        """Run `cleanup` (bounded by `timeout`), then stop the loop and wait for its thread to end."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            cleanup.close()
            return
        if self.in_own_thread():  # finalized from a coroutine on this very loop: it cannot wait for itself
            loop.create_task(_then_stop(cleanup, loop))
            return
        future = asyncio.run_coroutine_threadsafe(cleanup, loop)
        try:
            future.result(timeout)
        except Exception:  # never let a failing or slow cleanup keep the program from ending
            future.cancel()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


async def _then_stop(cleanup: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> None:
    try:
        await cleanup
    finally:
        loop.stop()


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        tasks = asyncio.all_tasks(loop)  # what is left when the loop stops: cancel it and let it unwind
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def _shutdown(loop: _LoopThread, manager: LLMManager) -> None:
    """The finalizer of a `SyncClient`: clean the manager up on its loop, then stop the loop."""
    loop.stop(manager.cleanup(), CLOSE_TIMEOUT)


class _End:
    """What `_next` returns at the end of a stream (StopAsyncIteration does not cross a Future well)."""


async def _next(stream: AsyncGenerator[T, None]) -> T | _End:
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return _End()


async def _close(stream: AsyncGenerator[Any, None]) -> None:
    await stream.aclose()


def to_request(
    prompt: Prompt,
    *,
    system: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
) -> LLMRequest:
    """The `LLMRequest` a sync call sends (validated later by the manager, before any network call).

    Raises:
        LLMValidationError: an `LLMRequest` given together with keyword settings, or a prompt of another type.
    """
    settings = {"system": system, "model": model, "temperature": temperature, "max_tokens": max_tokens,
                "tools": tools, "tool_choice": tool_choice}
    if isinstance(prompt, LLMRequest):
        given = sorted(name for name, value in settings.items() if value is not None)
        if given:
            raise LLMValidationError(f"set {', '.join(given)} on the LLMRequest itself, not as keywords",
                                     field=given[0])
        return prompt
    if isinstance(prompt, str):
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list):
        messages = list(prompt)
    else:
        raise LLMValidationError(f"prompt must be a string, a list of message dicts or an LLMRequest, got "
                                 f"{type(prompt).__name__}", field="prompt")
    return LLMRequest(messages=messages, system_prompt=system, temperature=temperature, max_tokens=max_tokens,
                      tools=tools, tool_choice=tool_choice,
                      extra_params={"model_name_override": model} if model is not None else {})


# -- the process-wide client ------------------------------------------------------------------------------------------

_default: SyncClient | None = None
_default_lock = threading.Lock()


def get_sync_client() -> SyncClient:
    """The process-wide client behind `generate_sync`, `stream_sync` and `run_sync` (made again if it was closed)."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = SyncClient()
        return _default


def generate_sync(
    prompt: Prompt, backend: Backend = None, *, fallback: bool = True, **options: Unpack[RequestOptions]
) -> LLMResponse:
    """`SyncClient.generate` on the process-wide client: the whole answer, blocking."""
    return get_sync_client().generate(prompt, backend, fallback=fallback, **options)


def stream_sync(
    prompt: Prompt, backend: Backend = None, *, fallback: bool = True, **options: Unpack[RequestOptions]
) -> Iterator[str]:
    """`SyncClient.stream` on the process-wide client: the answer's text as it arrives, blocking between chunks."""
    return get_sync_client().stream(prompt, backend, fallback=fallback, **options)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run any coroutine to completion from blocking code, even where a loop already runs (a notebook cell).

    It runs on the process-wide client's loop; what it binds to a loop (the global `get_llm_manager()`, an agent's
    manager) stays bound there, so keep using those through `run_sync`.
    """
    return get_sync_client().run(coroutine)
