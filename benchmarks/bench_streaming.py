"""Benchmark the streaming call parser and the budget closer: linear cost, small per token.

Runs ``chat.stream_chat`` over a scripted backend (no model) on answers of N and 4N characters,
streamed 4 characters at a time: prose (the hold-back check) and one long call (its string
value streams as call pieces). A 4x longer answer should take about 4x as long (linear); the
ratio is printed. Then the budget closer's own time per token, with 1 and 60 bound tools.

    python benchmarks/bench_streaming.py [--chars 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from toolace_integrations.core import chat
from toolace_integrations.core.budget import BudgetCloser
from toolace_integrations.core.generation import GenerationRequest, GenerationResult, StreamEvent
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools
from toolace_integrations.testing import make_tiny_toolace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bfcl_data import load_entries  # noqa: E402

TOOLS = (FunctionSpec("get_weather", "", {"type": "object", "properties": {"city": {}}}),)


class _Scripted:
    """A backend that streams a fixed answer in 4-character deltas."""

    model_name = "scripted"
    context_window = 0

    def __init__(self, text: str) -> None:
        self.text = text

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        for start in range(0, len(self.text), 4):
            yield StreamEvent(self.text[start : start + 4])
        yield StreamEvent("", GenerationResult(self.text, "stop", 1, 1))

    def generate_batch(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event | None = None
    ) -> list[GenerationResult]:
        raise NotImplementedError

    def prompt_text(self, messages: Sequence[Mapping[str, str]]) -> str:
        return ""


def _stream_seconds(text: str, repeats: int = 3) -> float:
    request = GenerationRequest(
        ({"role": "user", "content": "?"},), tools=TOOLS, tool_choice=ToolChoice(), constrained=True
    )
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _event in chat.stream_chat(_Scripted(text), request):
            pass
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Print the measurements."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=20000)
    n = parser.parse_args().chars
    answers = {
        "prose (hold-back check)": lambda size: "ab " * (size // 3),
        "one long call (string streams)": lambda size: f'[get_weather(city="{"x" * size}")]',
    }
    for label, make in answers.items():
        short, long = _stream_seconds(make(n)), _stream_seconds(make(4 * n))
        print(
            f"{label}: {n} chars {short:.3f}s, {4 * n} chars {long:.3f}s, ratio {long / short:.2f}"
        )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(make_tiny_toolace(tempfile.mkdtemp()))
    try:
        entries = load_entries()
    except (ImportError, FileNotFoundError):
        print("budget closer: bfcl-eval is not installed")
        return
    tools = list({t.name: t for e in entries for t in normalize_tools(e.functions)}.values())[:60]
    call = f"[{tools[0].name}(" + ", ".join(f"{k}=0" for k in tools[0].required) + ")]"
    ids = tokenizer.encode(call, add_special_tokens=False)
    for count in (1, 60):
        closer = BudgetCloser(tokenizer, tools[:count], ToolChoice("required"))
        started = time.perf_counter()
        for token in ids:
            closer.feed(token)
            closer.closer.ending()  # where it could end: asked after every token near the budget
        per_token = (time.perf_counter() - started) / len(ids) * 1e3
        print(f"budget closer, {count} tools: {per_token:.3f} ms/token")


if __name__ == "__main__":
    main()
