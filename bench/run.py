"""The benchmark suite: scout-llm against the vendor SDKs, LiteLLM and plain HTTP clients, on a local fake server.

    python -m bench.run            # the full run (`make bench`): about 8 minutes on 2 cores
    python -m bench.run --quick    # a smoke run: about 3 minutes, fewer rounds and calls

The fake server (`bench.server`) runs in its own process; every contender runs in its own process too, one per round,
in a shuffled order each round, so that slow drifts of the machine spread over all of them. Ratios are paired: taken
within each round, then summarised (median, and the range over rounds). Results go to `bench/results/`:
`results.md` (the tables), `results.png` (the plot) and `results.json` (every number).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.contenders import CONTENDERS, DIALECTS, available
from bench.report import build_report, write_outputs

ROOT = Path(__file__).resolve().parent.parent
#: LiteLLM fetches a price list from the internet at import unless told to use its bundled copy; its pool allows
#: 500 connections per host by default, too few to hold the memory load's 1,000 streams.
CHILD_ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "AIOHTTP_CONNECTOR_LIMIT_PER_HOST": "1000"}
#: Contenders that get a fraction of the calls (their throughput is a rate, so it stays comparable): LiteLLM takes
#: 5-10 ms a call here, and a full share would double the run.
SLOW = {"litellm": 3}
SDK_MODULES = ("openai", "anthropic", "google.genai", "ollama", "httpx2", "aiohttp")

QUICK = {"rounds": 2, "seq": 100, "streams": 30, "calls": 600, "warmup": 20, "open_streams": 1000,
         "memory_rounds": 1, "import_runs": 8}
FULL = {"rounds": 5, "seq": 300, "streams": 100, "calls": 1500, "warmup": 50, "open_streams": 1000,
        "memory_rounds": 1, "import_runs": 20}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls (a smoke run)")
    for name in FULL:
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument("--dialects", nargs="+", default=list(DIALECTS), choices=DIALECTS)
    parser.add_argument("--chunks", type=int, default=20, help="text chunks per stream")
    parser.add_argument("--seed", type=int, default=None, help="seed of the per-round order")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def start_server(chunks: int) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, "-m", "bench.server", "--chunks", str(chunks)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env=CHILD_ENV)
    assert server.stdout is not None
    line = server.stdout.readline()
    if not line.startswith("PORT "):
        server.kill()
        raise RuntimeError(f"the bench server did not start: {line!r}")
    return server, f"http://127.0.0.1:{int(line.split()[1])}"


def run_client(contender: str, url: str, *extra: str) -> dict[str, Any]:
    """One client process; a failure is reported (`{"error": ...}`) and the run goes on without that result."""
    command = [sys.executable, "-m", "bench.client", "--contender", contender, "--url", url, *extra]
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=CHILD_ENV)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 600 s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"    {contender} failed ({done.returncode}): {last}", flush=True)
        return {"error": last}
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def load_args(args: argparse.Namespace, contender: str) -> list[str]:
    scale = SLOW.get(contender, 1)
    return ["--dialects", *args.dialects, "--seq", str(max(30, args.seq // scale)),
            "--streams", str(max(10, args.streams // scale)), "--calls", str(max(300, args.calls // scale)),
            "--warmup", str(args.warmup)]


def import_times(runs: int) -> dict[str, Any]:
    """Wall time of `python -c pass` and `python -c "import llm"`, interleaved; and the SDKs `import llm` loads."""
    probe = f"import llm, sys; print([m for m in {SDK_MODULES!r} if m in sys.modules])"
    times: dict[str, list[float]] = {"bare": [], "llm": []}
    loaded: list[str] = []
    for _ in range(runs):
        for name, code in (("bare", "pass"), ("llm", probe)):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
            times[name].append((time.perf_counter() - start) * 1000)
            if name == "llm":
                loaded = json.loads(done.stdout.replace("'", '"'))
    bare, llm = statistics.median(times["bare"]), statistics.median(times["llm"])
    return {"bare_ms": bare, "llm_ms": llm, "overhead_ms": llm - bare, "sdks_loaded": loaded, "runs": runs}


def throughput_rounds(contenders: list[str], url: str, args: argparse.Namespace,
                      order: random.Random) -> list[dict[str, Any]]:
    rounds = []
    for number in range(1, args.rounds + 1):
        shuffled = contenders[:]
        order.shuffle(shuffled)
        results: dict[str, Any] = {}
        for contender in shuffled:
            started = time.perf_counter()
            results[contender] = run_client(contender, url, *load_args(args, contender))
            print(f"  round {number}/{args.rounds}: {contender:12s} {time.perf_counter() - started:5.1f}s",
                  flush=True)
        rounds.append(results)
    return rounds


def memory_rounds(contenders: list[str], url: str, args: argparse.Namespace,
                  order: random.Random) -> dict[str, dict[str, list[dict[str, Any]]]]:
    memory: dict[str, dict[str, list[dict[str, Any]]]] = {c: {d: [] for d in args.dialects} for c in contenders}
    for _ in range(args.memory_rounds):
        shuffled = contenders[:]
        order.shuffle(shuffled)
        for contender in shuffled:
            for dialect in args.dialects:
                result = run_client(contender, url, "--dialects", dialect, "--open-streams", str(args.open_streams))
                if "dialects" in result:
                    memory[contender][dialect].append(result["dialects"][dialect]["open"])
        print(f"  memory with {args.open_streams} open streams: done", flush=True)
    return memory


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    contenders = [name for name in args.contenders if available(name)]
    skipped = sorted(set(args.contenders) - set(contenders))
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)} (pip install 'scout-llm[bench]')", flush=True)
    order = random.Random(args.seed)
    started = time.perf_counter()
    server, url = start_server(args.chunks)
    try:
        print("import time ...", flush=True)
        imports = import_times(args.import_runs)
        print(f"throughput and latency: {args.rounds} rounds of {', '.join(contenders)}", flush=True)
        rounds = throughput_rounds(contenders, url, args, order)
        memory = memory_rounds(contenders, url, args, order) if args.memory_rounds and args.open_streams else {}
    finally:
        server.terminate()
        server.wait(timeout=10)
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    report = build_report(vars(args), command.strip(), imports, rounds, memory, time.perf_counter() - started)
    paths = write_outputs(report, args.out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(path) for path in paths.values()))


if __name__ == "__main__":
    main()
