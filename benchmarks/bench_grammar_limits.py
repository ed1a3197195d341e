"""Grammar compile cost against grammar size, and what the size limit refuses.

For each vocabulary (the tiny test checkpoint's tokenizer, a byte-level BPE trained here on
Python sources, and with ``--tokenizer`` any tokenizer folder, e.g. Llama-3.1's built as in
shared/FACTS.md, never committed) compiles, cache cleared, the tool-call grammar of N tools x
200 optional string properties (issue 19's shape: 50 x 200 took 22.5 s with the 128k
vocabulary) and prints its size, the time to build the text, the compile time, the growth
exponent between sizes and whether ``TOOLACE_MAX_GRAMMAR_BYTES`` (128 KiB by default) refuses
it; then how long a refusal takes. Compiles stop once one takes longer than ``--max-seconds``.

    python benchmarks/bench_grammar_limits.py [--vocab 8000] [--tools 1,2,5,10,17,25,50]
        [--tokenizer FOLDER]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from typing import Any

from bench_grammar import build_tokenizer
from transformers import AutoTokenizer

from toolace_integrations.errors import GrammarTooLargeError
from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools
from toolace_integrations.local.grammar import (
    GrammarConstraint,
    max_grammar_bytes,
    tool_call_grammar,
)
from toolace_integrations.testing import make_tiny_toolace

PROPERTIES = 200


def wide_tools(count: int) -> list[FunctionSpec]:
    properties = {f"field_{j}": {"type": "string"} for j in range(PROPERTIES)}
    schema = {"type": "object", "properties": properties}
    return normalize_tools([{"name": f"tool_{i}", "parameters": schema} for i in range(count)])


def measure(label: str, tokenizer: Any, counts: list[int], max_seconds: float) -> None:
    padded = -(-len(tokenizer) // 64) * 64
    stop = [tokenizer.convert_tokens_to_ids("<|eot_id|>")]
    start = time.perf_counter()
    constraint = GrammarConstraint(tokenizer, padded, stop)
    print(f"\n{label}: {len(tokenizer)} tokens (padded {padded}); "
          f"TokenizerInfo {time.perf_counter() - start:.2f} s")  # fmt: skip
    print(f"  {'tools':>5} {'bytes':>9} {'text ms':>8} {'compile s':>10} {'exponent':>8}  limit")
    previous: tuple[int, float] | None = None
    for count in counts:
        tools = wide_tools(count)
        t0 = time.perf_counter()
        text = tool_call_grammar(tools, ToolChoice("required"), max_bytes=0)
        text_ms = (time.perf_counter() - t0) * 1e3
        size = len(text.encode())
        refused = "refused" if size > max_grammar_bytes() else "allowed"
        if previous is not None and previous[1] > max_seconds:
            print(f"  {count:>5} {size:>9,} {text_ms:>8.1f} {'skipped':>10} {'':>8}  {refused}")
            continue
        constraint.clear_cache()
        t1 = time.perf_counter()
        constraint.compile(text)
        seconds = time.perf_counter() - t1
        exponent = ""
        if previous is not None:
            exponent = f"{math.log(seconds / previous[1]) / math.log(size / previous[0]):.2f}"
        print(f"  {count:>5} {size:>9,} {text_ms:>8.1f} {seconds:>10.3f} {exponent:>8}  {refused}")
        previous = (size, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=8000, help="trained BPE size (0: skip)")
    parser.add_argument("--corpus-mb", type=int, default=8)
    parser.add_argument("--tools", default="1,2,5,10,17,25,50")
    parser.add_argument("--max-seconds", type=float, default=30.0)
    parser.add_argument("--tokenizer", help="also measure this tokenizer folder")
    args = parser.parse_args()
    counts = [int(n) for n in args.tools.split(",")]
    print(f"limit: {max_grammar_bytes():,} bytes; tools x {PROPERTIES} optional string properties")

    refuse = wide_tools(max(counts))
    t0 = time.perf_counter()
    try:
        tool_call_grammar(refuse, ToolChoice("required"))
        print(f"{max(counts)} tools: under the limit")
    except GrammarTooLargeError as error:
        print(f"{max(counts)} tools refused in {(time.perf_counter() - t0) * 1e3:.0f} ms "
              f"({error.size:,} bytes)")  # fmt: skip

    with tempfile.TemporaryDirectory() as folder:
        tiny = AutoTokenizer.from_pretrained(make_tiny_toolace(folder))
    measure("tiny test tokenizer", tiny, counts, args.max_seconds)
    if args.vocab:
        start = time.perf_counter()
        trained = build_tokenizer(args.vocab, args.corpus_mb)
        print(f"\n(trained the BPE in {time.perf_counter() - start:.1f} s)")
        measure("trained byte-level BPE", trained, counts, args.max_seconds)
    if args.tokenizer:
        measure(
            args.tokenizer, AutoTokenizer.from_pretrained(args.tokenizer), counts, args.max_seconds
        )


if __name__ == "__main__":
    main()
