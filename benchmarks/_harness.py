"""Shared pieces of the benchmarks: the machine, the model, timing and the workloads' tools.

Every comparison runs its variants interleaved (the order rotates each repeat) and reports
medians, so load from other processes hits all variants alike and the ratios stay meaningful
even when absolute times are noisy.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from toolace_integrations.format.tools import FunctionSpec

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

MODEL_SHAPE = {"layers": 4, "hidden": 512, "vocab_size": 8000, "max_position_embeddings": 8192}


@dataclass
class Row:
    """One line of the results table."""

    case: str
    what: str
    ours: str
    reference: str
    ratio: str
    target: str
    met: str
    sanity: str


@dataclass
class Section:
    """What one benchmark produced: table rows plus optional detail lines (markdown)."""

    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


def build_model(folder: str, tokenizer: str = "toy") -> str:
    """Write the benchmark's random-weight Llama (4 layers, hidden 512) to ``folder``.

    ``tokenizer="llama3"`` gives it Meta's Llama-3.1 tokenizer and 128,256-token vocabulary.
    """
    from toolace_integrations.testing import make_tiny_toolace

    return make_tiny_toolace(folder, **MODEL_SHAPE, tokenizer=tokenizer)  # type: ignore[arg-type]


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gib() -> str:
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages, to judge how noisy a run was."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_description() -> list[str]:
    """Markdown bullet lines describing this machine and the software under test."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return [
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores ({usable} usable), "
        f"RAM {_memory_gib()}",
        f"- torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), "
        f"transformers {_package('transformers')}, tokenizers {_package('tokenizers')}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; "
        f"load average at start (1/5/15 min): {load_average()}",
    ]


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds and process CPU seconds (all threads) of one run."""

    wall: float
    cpu: float


def timed(function: Callable[[], Any]) -> tuple[Timing, Any]:
    """How long ``function`` took, and what it returned.

    CPU time is much less sensitive than wall time to other processes competing for the cores
    (with one intra-op thread it is close to the work done), so both are kept.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    value = function()
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), value


def medians(timings: Sequence[Timing]) -> Timing:
    """Median wall and median CPU time over repeats."""
    return Timing(median([t.wall for t in timings]), median([t.cpu for t in timings]))


def interleaved(
    variants: dict[str, Callable[[], Any]], repeats: int, *, warmup: bool = True
) -> dict[str, list[Any]]:
    """Run each variant ``repeats`` times, rotating the order every repeat.

    Each variant returns its own measurements; the lists keep them in repeat order.
    """
    names = list(variants)
    if warmup:
        for name in names:
            variants[name]()
    results: dict[str, list[Any]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(variants[name]())
    return results


def median(values: Sequence[float]) -> float:
    """The median (the middle of several repeats)."""
    return float(statistics.median(values))


def seconds(value: float) -> str:
    """A duration for the table."""
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def verdict(ok: bool) -> str:
    """The 'met' column."""
    return "yes" if ok else "**no**"


@contextlib.contextmanager
def no_stop_tokens(model: Any, stop_ids: Sequence[int]) -> Iterator[None]:
    """Make the stop tokens unreachable, so every run generates exactly ``max_new_tokens``.

    A forward hook on the output layer sets their logits to ``-inf``; it acts on the shared
    model object, so our engine and the raw ``model.generate`` baseline are affected alike.
    """
    ids = torch.tensor(sorted(set(stop_ids)), dtype=torch.long)

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return output.index_fill(-1, ids.to(output.device), float("-inf"))

    handle = model.get_output_embeddings().register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


_DOMAINS = (
    ("weather", "the weather service", "city"),
    ("flights", "the airline booking system", "airport"),
    ("hotels", "the hotel reservation platform", "hotel_id"),
    ("stocks", "the market data feed", "ticker"),
    ("calendar", "the user's calendar", "event_id"),
    ("email", "the mail server", "address"),
    ("maps", "the mapping and routing service", "place"),
    ("recipes", "the recipe database", "dish"),
    ("music", "the music streaming catalogue", "track_id"),
    ("news", "the news aggregation service", "topic"),
    ("crm", "the customer relationship database", "customer_id"),
    ("shipping", "the parcel tracking network", "tracking_number"),
)
_ACTIONS = (
    ("search", "Search {where}; best matches first."),
    ("get_details", "Fetch one record from {where}."),
    ("create", "Create a record in {where}; returns its id."),
    ("update", "Change fields of a record in {where}."),
    ("list_recent", "Records recently changed in {where}."),
)


def tool_catalogue(count: int) -> list[FunctionSpec]:
    """``count`` distinct tools (up to 60), compact: a short description, 2-3 parameters."""
    tools = []
    for index in range(count):
        domain, where, key = _DOMAINS[index % len(_DOMAINS)]
        action, description = _ACTIONS[(index // len(_DOMAINS)) % len(_ACTIONS)]
        properties: dict[str, Any] = {
            key: {"type": "string", "description": "Name or id."},
            "limit": {"type": "integer", "minimum": 1},
        }
        if index % 2:
            properties["language"] = {"type": "string", "enum": ["en", "fr", "de"]}
        tools.append(
            FunctionSpec(
                f"{domain}.{action}",
                description.format(where=where),
                {"type": "object", "properties": properties, "required": [key]},
            )
        )
    return tools


def write_section(name: str, body: str) -> None:
    """Put ``body`` between the markers of section ``name`` in RESULTS.md, in place.

    The first time, the section is appended; every other section (hand-written ones included)
    is left as it is.
    """
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmarks\n"
    if begin in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    print(f"updated {RESULTS} ({name})")
