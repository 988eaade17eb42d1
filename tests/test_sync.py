"""The blocking entry point (llm/sync.py): outside any event loop, inside a running one (a notebook cell), streaming,
errors, interruption and shutdown -- real SDK clients against the fake vendor servers.

The tests are plain functions: a blocking call made on an asyncio test's own loop would block the fake servers too,
so each fake serves from its own thread here, as a remote vendor would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import llm
from llm.base import LLMRequest, ResponseDone, TextDelta
from llm.errors import (
    LLMAllBackendsFailedError,
    LLMAuthenticationError,
    LLMError,
    LLMServerError,
    LLMStreamError,
    LLMValidationError,
)
from llm.manager import LLMManager
from llm.sync import SyncClient
from tests.cli.runner import clean_env, run
from tests.fakes.claude_fake import API_KEY as CLAUDE_KEY
from tests.fakes.claude_fake import FakeClaude
from tests.fakes.claude_fake import error_reply as claude_error_reply
from tests.fakes.openai_fake import API_KEY as OPENAI_KEY
from tests.fakes.openai_fake import VENDOR as OPENAI
from tests.fakes.openai_fake import FakeOpenAI, _text_chunks, error_reply
from tests.fakes.server import FakeServer, Hang, StreamReply, serving
from tests.manager.helpers import FAST, backend_for, open_connections
from tests.test_import import loaded_after


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    with serving(FakeOpenAI()) as server:
        assert isinstance(server, FakeOpenAI)
        yield server


@pytest.fixture
def client(openai_server: FakeOpenAI) -> Iterator[SyncClient]:
    """A client whose manager has one OpenAI backend on the fake (no settings read)."""
    with SyncClient(LLMManager(**FAST), configure=False) as client:
        assert client.run(client.manager.register_backend(backend_for("openai", openai_server)))
        yield client


def wait_until_closed(server: FakeServer, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while open_connections(server):
        assert time.monotonic() < deadline, "the HTTP connection was left open"
        time.sleep(0.01)


def in_a_notebook_cell(cell: object) -> object:
    """Run `cell()` the way Jupyter runs a cell: synchronous code called by a coroutine on a running loop."""
    assert callable(cell)

    async def kernel() -> object:
        asyncio.get_running_loop()  # a loop runs here: asyncio.run() would fail in this cell
        return cell()

    return asyncio.run(kernel())


# -- calls, with and without a running loop ---------------------------------------------------------------------------


def test_generate_outside_any_event_loop(client: SyncClient, openai_server: FakeOpenAI) -> None:
    response = client.generate("hello there", max_tokens=20)
    assert (response.content, response.backend_type, response.model) == ("echo: hello there", "openai", "gpt-4.1-mini")
    assert response.usage["total_tokens"] == 10
    assert openai_server.count("/chat/completions") == 1


def test_generate_inside_a_running_loop_as_a_notebook_cell(client: SyncClient, openai_server: FakeOpenAI) -> None:
    response = in_a_notebook_cell(lambda: client.generate("from a cell"))
    assert isinstance(response, llm.LLMResponse) and response.content == "echo: from a cell"
    # The same client again outside, then inside: one manager on one loop serves all three calls.
    assert client.generate("outside").content == "echo: outside"
    assert in_a_notebook_cell(lambda: client.generate("again").content) == "echo: again"
    assert openai_server.count("/chat/completions") == 3


def test_calls_run_on_the_clients_own_thread(client: SyncClient) -> None:
    async def where() -> str:
        return threading.current_thread().name

    assert client.run(where()) == "llm-sync"
    assert in_a_notebook_cell(lambda: client.run(where())) == "llm-sync"


def test_threads_share_one_client(client: SyncClient, openai_server: FakeOpenAI) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: client.generate(f"thread {i}").content, range(16)))
    assert answers == [f"echo: thread {i}" for i in range(16)]
    assert openai_server.count("/chat/completions") == 16


def test_keywords_build_the_request(client: SyncClient, openai_server: FakeOpenAI) -> None:
    client.generate("hi", system="Be brief", model="gpt-custom", temperature=0, max_tokens=5)
    body = openai_server.requests[-1].body
    assert body["model"] == "gpt-custom" and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": "Be brief"}
    assert body["messages"][-1] == {"role": "user", "content": "hi"}


def test_a_request_or_a_message_list_is_sent_as_given(client: SyncClient, openai_server: FakeOpenAI) -> None:
    request = LLMRequest(messages=[{"role": "user", "content": "as a request"}], max_tokens=7)
    assert client.generate(request).content == "echo: as a request"
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "second"}]
    assert client.generate(messages).content == "echo: second"
    assert openai_server.requests[-1].body["messages"] == messages


# -- streaming ---------------------------------------------------------------------------------------------------------


def test_stream_yields_text_as_it_arrives(client: SyncClient, openai_server: FakeOpenAI) -> None:
    assert list(client.stream("one two three")) == ["echo:", " one", " two", " three"]
    assert openai_server.count("/chat/completions") == 1


def test_stream_inside_a_running_loop(client: SyncClient) -> None:
    assert in_a_notebook_cell(lambda: "".join(client.stream("in a cell"))) == "echo: in a cell"


def test_stream_events_end_with_the_whole_response(client: SyncClient) -> None:
    events = list(client.stream_events("count me"))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["echo:", " count", " me"]
    done = events[-1]
    assert isinstance(done, ResponseDone)
    assert done.response.content == "echo: count me" and done.response.usage["total_tokens"] == 10
    assert done.response.backend_type == "openai"


def test_leaving_a_stream_early_closes_the_http_stream(client: SyncClient, openai_server: FakeOpenAI) -> None:
    openai_server.enqueue(StreamReply(_text_chunks("first", " second"), then="hang"))
    for text in client.stream("hi"):
        assert text == "first"
        break
    wait_until_closed(openai_server)


def test_an_unstarted_stream_sends_nothing(client: SyncClient, openai_server: FakeOpenAI) -> None:
    stream = client.stream("never read")
    del stream
    assert openai_server.count("/chat/completions") == 0


# -- errors ------------------------------------------------------------------------------------------------------------


def test_a_backend_error_reaches_the_caller_unchanged(client: SyncClient, openai_server: FakeOpenAI) -> None:
    openai_server.enqueue(error_reply(401, {}))
    with pytest.raises(LLMAuthenticationError) as caught:
        client.generate("hi")
    assert type(caught.value) is LLMAuthenticationError
    assert caught.value.status_code == 401 and caught.value.backend == "openai"
    assert type(caught.value.__cause__).__name__ == "AuthenticationError"  # the SDK's exception, chained
    assert openai_server.count("/chat/completions") == 1  # not retried


def test_errors_inside_a_running_loop_are_the_same(client: SyncClient, openai_server: FakeOpenAI) -> None:
    openai_server.enqueue(error_reply(401, {}))
    with pytest.raises(LLMAuthenticationError):
        in_a_notebook_cell(lambda: client.generate("hi"))


def test_an_invalid_request_fails_before_any_request(client: SyncClient, openai_server: FakeOpenAI) -> None:
    with pytest.raises(LLMValidationError) as caught:
        client.generate("hi", temperature=9)
    assert caught.value.field == "temperature"
    with pytest.raises(LLMValidationError) as caught:
        client.generate(LLMRequest(messages=[{"role": "user", "content": "hi"}]), max_tokens=5)
    assert caught.value.field == "max_tokens"
    with pytest.raises(LLMValidationError) as caught:
        client.generate(42)  # type: ignore[arg-type]
    assert caught.value.field == "prompt"
    assert openai_server.count() == 0


def test_a_failed_stream_raises_with_the_partial_text(client: SyncClient, openai_server: FakeOpenAI) -> None:
    reply, partial = OPENAI.midstream_error
    openai_server.enqueue(reply)
    pieces: list[str] = []
    with pytest.raises(LLMStreamError) as caught:
        for text in client.stream("hi"):
            pieces.append(text)
    assert "".join(pieces) == partial == caught.value.partial_content
    assert openai_server.count("/chat/completions") == 1  # nothing re-sent after the first chunk


def test_every_attempt_comes_back_in_one_group(openai_server: FakeOpenAI) -> None:
    with serving(FakeClaude()) as claude_server, SyncClient(LLMManager(**FAST, retry_attempts=1),
                                                           configure=False) as client:
        assert client.run(client.manager.register_backend(backend_for("openai", openai_server)))
        assert client.run(client.manager.register_backend(backend_for("claude", claude_server)))
        openai_server.enqueue(error_reply(500, {}))
        claude_server.enqueue(claude_error_reply(500, {}))
        with pytest.raises(LLMAllBackendsFailedError) as caught:
            client.generate("hi")
    assert [type(e) for e in caught.value.exceptions] == [LLMServerError, LLMServerError]
    assert [e.backend for e in caught.value.exceptions] == ["openai", "claude"]


# -- interruption, misuse, shutdown ------------------------------------------------------------------------------------


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals reach the main thread")
def test_ctrl_c_while_waiting_cancels_the_call(client: SyncClient, openai_server: FakeOpenAI) -> None:
    openai_server.enqueue(Hang())
    timer = threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        client.generate("hi")
    assert time.monotonic() - started < 2
    wait_until_closed(openai_server)  # the request was cancelled on the client's loop, its connection closed
    assert client.generate("still usable").content == "echo: still usable"


def test_a_blocking_call_from_the_clients_own_loop_is_refused(client: SyncClient) -> None:
    async def misuse() -> object:
        return client.generate("hi")

    with pytest.raises(RuntimeError, match="own SyncClient loop"):
        client.run(misuse())


def test_close_cleans_up_and_stops_the_thread(openai_server: FakeOpenAI) -> None:
    client = SyncClient(LLMManager(**FAST), configure=False)
    assert client.run(client.manager.register_backend(backend_for("openai", openai_server)))
    client.generate("hi")
    thread = next(t for t in threading.enumerate() if t.name == "llm-sync" and t.ident == _loop_thread_id(client))
    client.close()
    assert client.closed and not thread.is_alive()
    assert client.manager.get_available_backends() == []  # the manager was cleaned up
    wait_until_closed(openai_server)
    with pytest.raises(LLMError, match="closed"):
        client.generate("hi")
    with pytest.raises(LLMError, match="closed"):
        next(client.stream("hi"))
    client.close()  # twice is fine


def _loop_thread_id(client: SyncClient) -> int | None:
    async def ident() -> int | None:
        return threading.get_ident()

    return client.run(ident())


def test_import_llm_stays_cheap_with_the_sync_api() -> None:
    assert loaded_after("import llm\nllm.generate_sync, llm.SyncClient, llm.stream_sync, llm.run_sync") == set()


# -- the process-wide functions, in a script as a user runs it ---------------------------------------------------------

SCRIPT = """
import asyncio
import llm

response = llm.generate_sync("from a script", max_tokens=20)
print(response.backend_type, response.model, response.content)

def cell():  # a notebook cell: plain code, with the kernel's loop running
    print("".join(llm.stream_sync("streamed in a cell")))
    print(llm.generate_sync("claude in a cell", backend="claude").content)
    try:
        llm.generate_sync("hi", backend="nonexistent")
    except llm.LLMError as error:
        print("error:", type(error).__name__, getattr(error, "field", None))

async def kernel():
    cell()

asyncio.run(kernel())
print(llm.run_sync(asyncio.sleep(0, "run_sync works")))
"""


async def test_module_functions_in_a_script_and_a_notebook_cell(tmp_path: Path) -> None:
    async with FakeOpenAI() as openai_server, FakeClaude() as claude_server:
        (tmp_path / "script.py").write_text(SCRIPT, encoding="utf-8")
        env = clean_env(SCOUT_OPENAI_API_KEY=OPENAI_KEY, SCOUT_OPENAI_BASE_URL=openai_server.base_url,
                        SCOUT_ANTHROPIC_API_KEY=CLAUDE_KEY, SCOUT_ANTHROPIC_BASE_URL=claude_server.url,
                        SCOUT_ANTHROPIC_MODEL="claude-haiku-4-5")
        started = time.monotonic()
        result = await run([str(tmp_path / "script.py")], env, tmp_path)
        elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "openai gpt-4.1-mini echo: from a script",
        "echo: streamed in a cell",
        "echo: claude in a cell",
        "error: LLMValidationError backend_type",
        "run_sync works",
    ]
    assert result.stderr == "", "a clean exit: no unclosed session, no thread traceback"
    assert elapsed < 15
    assert openai_server.count("/chat/completions") == 2 and claude_server.count("/messages") == 1


LOCAL_SCRIPT = """
import llm

response = llm.generate_sync("Say hi.", max_tokens=5, temperature=0)
print(response.backend_type)
print(len("".join(llm.stream_sync("Count to three.", max_tokens=8, temperature=0))) > 0)
"""


def _local_model_installed() -> bool:
    import importlib.util

    from llm.backends.local import find_model_file
    from llm.config import DEFAULT_MODELS

    if importlib.util.find_spec("llama_cpp") is None:
        return False
    try:
        find_model_file(DEFAULT_MODELS["local"])
    except LLMError:
        return False
    return True


@pytest.mark.local
@pytest.mark.skipif(not _local_model_installed(), reason="llama-cpp-python or the SmolLM2 model not installed")
async def test_the_embedded_model_is_freed_cleanly_at_exit(tmp_path: Path) -> None:
    """At exit the executor threads are already joined; the local model is still freed, without a warning."""
    (tmp_path / "script.py").write_text(LOCAL_SCRIPT, encoding="utf-8")
    env = clean_env(SCOUT_LOCAL_ENABLED="true", SCOUT_LOCAL_THREADS="1")
    result = await run([str(tmp_path / "script.py")], env, tmp_path, timeout=120)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == ["local", "True"]
    assert "cleanup of local failed" not in result.stderr
