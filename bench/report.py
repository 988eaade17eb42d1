"""Summaries, paired ratios, the issue-11 targets, and the Markdown table / PNG plot / JSON written by `bench.run`."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

LOADS = ("seq", "stream", "c64", "c256")
LABELS = {"sdk": "SDK (defaults)", "sdk-aiohttp": "SDK + aiohttp", "sdk-post": "SDK generic post + aiohttp",
          "scout": "scout-llm", "scout-httpx":
          "scout-llm (httpx2)", "litellm": "LiteLLM", "httpx2": "httpx2 floor", "aiohttp": "aiohttp floor"}
PACKAGES = ("openai", "anthropic", "httpx2", "aiohttp", "litellm", "pydantic")

Rounds = list[dict[str, Any]]


def machine() -> dict[str, Any]:
    """What ran the benchmark: CPU model, cores, memory, Python and the packages measured."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    import os

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}", "packages": versions}


def _load(result: dict[str, Any], dialect: str, load: str) -> dict[str, float] | None:
    loads = result.get("dialects", {}).get(dialect)
    return loads.get(load) if loads else None


def summarise(rounds: Rounds, contender: str, dialect: str, load: str) -> dict[str, float] | None:
    """The median over rounds of every number of one load (medians, p99s, throughput, CPU)."""
    values = [v for r in rounds if contender in r and (v := _load(r[contender], dialect, load)) is not None]
    if not values:
        return None
    return {key: statistics.median(v[key] for v in values) for key in values[0]}


def paired(rounds: Rounds, a: str, b: str, dialect: str, load: str, metric: str,
           combine: Callable[[float, float], float] = lambda x, y: x / y) -> dict[str, float] | None:
    """`combine(a, b)` of one metric within each round (a ratio by default), then its median and range."""
    values = []
    for result in rounds:
        if a in result and b in result:
            x, y = _load(result[a], dialect, load), _load(result[b], dialect, load)
            if x is not None and y is not None and y.get(metric):
                values.append(combine(x[metric], y[metric]))
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": len(values)}


def _target(name: str, dialect: str, value: dict[str, float] | None, goal: str, ok: Callable[[float], bool],
            unit: str = "x") -> dict[str, Any]:
    return {"target": name, "dialect": dialect, "value": value, "goal": goal, "unit": unit,
            "met": None if value is None else ok(value["median"])}


def targets(rounds: Rounds, memory: dict[str, Any], imports: dict[str, Any],
            dialects: list[str]) -> list[dict[str, Any]]:
    """Issue 11's targets (on the SDKs' public interfaces), each measured side by side within a round: latency against
    the same SDK call path on the same transport (`sdk-post`, the generic `client.post` on aiohttp), throughput
    against the SDK's defaults and LiteLLM."""
    rows = []
    for d in dialects:
        rows += [
            _target("latency vs same SDK call path + transport, sequential", d,
                    paired(rounds, "scout", "sdk-post", d, "seq", "median_ms"), "<= 1.05", lambda v: v <= 1.05),
            _target("latency vs same SDK call path + transport, 20-chunk stream", d,
                    paired(rounds, "scout", "sdk-post", d, "stream", "median_ms"), "<= 1.05", lambda v: v <= 1.05),
            _target("time to first chunk overhead vs same SDK call path + transport", d,
                    paired(rounds, "scout", "sdk-post", d, "stream", "ttfc_median_ms", lambda x, y: x - y),
                    "< 0.2 ms", lambda v: v < 0.2, "ms"),
            _target("throughput at 64 concurrent vs SDK defaults", d,
                    paired(rounds, "scout", "sdk", d, "c64", "throughput_rps"), ">= 2.5", lambda v: v >= 2.5),
            _target("throughput at 64 concurrent vs LiteLLM", d,
                    paired(rounds, "scout", "litellm", d, "c64", "throughput_rps"), ">= 5", lambda v: v >= 5),
        ]
        rows.append(_target("(reference) throughput at 64 concurrent: SDK generic post vs SDK defaults", d,
                            paired(rounds, "sdk-post", "sdk", d, "c64", "throughput_rps"), "-", lambda v: v >= 3))
        for load in LOADS:
            rows.append(_target(f"median latency vs LiteLLM, {load}", d,
                                paired(rounds, "scout", "litellm", d, load, "median_ms"), "< 1", lambda v: v < 1))
        rows.append(_target("RSS with 1,000 open streams vs SDK defaults", d, memory_ratio(memory, d, "sdk"),
                            "<= 1.5", lambda v: v <= 1.5))
    overhead = {"median": imports["overhead_ms"], "min": imports["overhead_ms"], "max": imports["overhead_ms"]}
    rows.append(_target("`import llm` over bare Python", "-", overhead, "<= 30 ms", lambda v: v <= 30, "ms"))
    loaded = ", ".join(imports["sdks_loaded"]) or "none"
    rows.append({"target": "`import llm` loads no vendor SDK", "dialect": "-", "value": None, "unit": "",
                 "goal": "none", "met": not imports["sdks_loaded"], "note": loaded})
    return rows


def memory_ratio(memory: dict[str, Any], dialect: str, baseline: str) -> dict[str, float] | None:
    ours, theirs = memory.get("scout", {}).get(dialect), memory.get(baseline, {}).get(dialect)
    if not ours or not theirs:
        return None
    ratios = [a["rss_open_mb"] / b["rss_open_mb"] for a, b in zip(ours, theirs, strict=False)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios), "rounds": len(ratios)}


def build_report(args: dict[str, Any], command: str, imports: dict[str, Any], rounds: Rounds,
                 memory: dict[str, Any], elapsed: float) -> dict[str, Any]:
    contenders = [c for c in LABELS if any("dialects" in r.get(c, {}) for r in rounds)]
    dialects = list(args["dialects"])
    table = {c: {d: {load: summarise(rounds, c, d, load) for load in LOADS} for d in dialects} for c in contenders}
    peak = {c: statistics.median(r[c]["peak_rss_mb"] for r in rounds if "peak_rss_mb" in r.get(c, {}))
            for c in contenders}
    failures = sorted({f"{c}: {r[c]['error']}" for r in rounds for c in r if "error" in r[c]})
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(), "command": command,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in args.items()}, "elapsed_s": elapsed,
        "contenders": contenders, "dialects": dialects, "table": table, "peak_rss_mb": peak, "imports": imports,
        "memory": memory, "targets": targets(rounds, memory, imports, dialects), "rounds": rounds,
        "failures": failures,
    }


# -- Markdown -----------------------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _range(value: dict[str, float] | None, unit: str) -> str:
    if value is None:
        return "not measured"
    suffix = " ms" if unit == "ms" else "x"
    return f"{value['median']:.3g}{suffix} ({value['min']:.3g} to {value['max']:.3g})"


def _dialect_table(report: dict[str, Any], dialect: str) -> list[str]:
    lines = [
        "| contender | sequential median / p99 (ms) | stream TTFC / total (ms) | 64 concurrent: req/s, median / p99 "
        "(ms) | 256 concurrent: req/s, median / p99 (ms) | CPU per request, seq / c64 (ms) | peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in report["contenders"]:
        row = report["table"][c][dialect]
        seq, stream, c64, c256 = (row[load] or {} for load in LOADS)
        lines.append(
            f"| {LABELS[c]} | {_f(seq.get('median_ms'))} / {_f(seq.get('p99_ms'))} "
            f"| {_f(stream.get('ttfc_median_ms'))} / {_f(stream.get('median_ms'))} "
            f"| {_f(c64.get('throughput_rps'), 0)}, {_f(c64.get('median_ms'), 1)} / {_f(c64.get('p99_ms'), 1)} "
            f"| {_f(c256.get('throughput_rps'), 0)}, {_f(c256.get('median_ms'), 1)} / {_f(c256.get('p99_ms'), 1)} "
            f"| {_f(seq.get('cpu_ms_per_req'))} / {_f(c64.get('cpu_ms_per_req'))} | {_f(report['peak_rss_mb'][c], 0)} |"
        )
    return lines


def _memory_table(report: dict[str, Any]) -> list[str]:
    memory = report["memory"]
    if not memory:
        return []
    streams = next((runs[0]["streams"] for per in memory.values() for runs in per.values() if runs), 0)
    lines = [f"### Memory with {streams:,} open streams (client RSS; first chunk received, streams held open)", "",
             "| contender | " + " | ".join(f"{d}: RSS MB (KB per stream)" for d in report["dialects"]) + " |",
             "|---|" + "---|" * len(report["dialects"])]
    for c in report["contenders"]:
        cells = []
        for d in report["dialects"]:
            runs = memory.get(c, {}).get(d) or []
            rss = statistics.median(r["rss_open_mb"] for r in runs) if runs else None
            per = statistics.median(r["kb_per_stream"] for r in runs) if runs else None
            cells.append(f"{_f(rss, 0)} ({_f(per, 0)})")
        lines.append(f"| {LABELS[c]} | " + " | ".join(cells) + " |")
    return lines + [""]


def _targets_table(report: dict[str, Any]) -> list[str]:
    lines = ["| target | dialect | measured: median (range over rounds) | goal | met |", "|---|---|---|---|---|"]
    for row in report["targets"]:
        value = row.get("note") or _range(row["value"], row["unit"])
        met = "-" if row["goal"] == "-" else {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        lines.append(f"| {row['target']} | {row['dialect']} | {value} | {row['goal']} | {met} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    m, s, imports = report["machine"], report["settings"], report["imports"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines = [
        "# scout-llm benchmarks", "",
        f"{report['date']} on {m['cpu']} ({m['cores']} cores, {m['memory_gib']} GiB), {m['os']}, Python "
        f"{m['python']}; {packages}.", "",
        f"Command: `{report['command']}` ({report['elapsed_s'] / 60:.1f} min). {s['rounds']} rounds; per round and "
        f"dialect: {s['seq']} sequential calls, {s['streams']} streams of {s['chunks']} chunks, {s['calls']} calls at "
        "each concurrency. Every contender runs in its own process against a fake server in another process; the "
        "order is shuffled each round; ratios are taken within a round (paired), then summarised. LiteLLM gets a "
        "third of the calls (5-10 ms each here) and a per-host pool of 1,000 (its default, 500, cannot hold the "
        "memory load).", "",
        "## Targets (issue 11)", "", *_targets_table(report), "",
    ]
    if report["failures"]:
        lines += ["Failed runs (left out): " + "; ".join(report["failures"]), ""]
    for dialect in report["dialects"]:
        lines += [f"## {dialect} dialect (medians over rounds)", "", *_dialect_table(report, dialect), ""]
    lines += _memory_table(report)
    lines += ["### Import time", "",
              f"`python -c pass`: {imports['bare_ms']:.1f} ms; `python -c \"import llm\"`: {imports['llm_ms']:.1f} "
              f"ms (median of {imports['runs']}); `import llm` adds {imports['overhead_ms']:.1f} ms and loads "
              f"{', '.join(imports['sdks_loaded']) or 'no vendor SDK'}.", ""]
    return "\n".join(lines)


# -- plot and files -------------------------------------------------------------------------------------------------


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("c64", "throughput_rps", "64 concurrent calls: requests/s"),
              ("c256", "throughput_rps", "256 concurrent calls: requests/s"),
              ("seq", "median_ms", "sequential call: median latency (ms)"),
              ("stream", "median_ms", f"{report['settings']['chunks']}-chunk stream: median total (ms)")]
    contenders, dialects = report["contenders"], report["dialects"]
    figure, axes = plt.subplots(2, 2, figsize=(13, 8))
    width = 0.8 / len(dialects)
    for axis, (load, metric, title) in zip(axes.flat, panels, strict=True):
        for i, dialect in enumerate(dialects):
            values = [(report["table"][c][dialect][load] or {}).get(metric, 0.0) for c in contenders]
            positions = [x + i * width for x in range(len(contenders))]
            bars = axis.bar(positions, values, width, label=dialect)
            axis.bar_label(bars, fmt="%.0f" if metric == "throughput_rps" else "%.2f", fontsize=7)
        axis.set_title(title)
        axis.set_xticks([x + width * (len(dialects) - 1) / 2 for x in range(len(contenders))])
        axis.set_xticklabels([LABELS[c] for c in contenders], rotation=25, ha="right", fontsize=8)
        axis.legend(fontsize=8)
    figure.suptitle(f"scout-llm benchmarks, {report['date']} ({report['machine']['cores']} cores)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_outputs(report: dict[str, Any], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "results.md", "json": out / "results.json"}
    paths["markdown"].write_text(markdown(report))
    paths["json"].write_text(json.dumps(report, indent=1, default=str))
    try:
        plot(report, out / "results.png")
        paths["plot"] = out / "results.png"
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'scout-llm[bench]')")
    return paths
