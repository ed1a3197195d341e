"""Benchmark grammar-constrained decoding: per-token cost and grammar compile time.

Builds, offline, a byte-level BPE tokenizer (trained on Python sources found on this machine, so
the vocabulary size is printed rather than assumed) and a random-weight Llama, then prints in one
run: per-token time with and without the tool-call grammar (runs interleaved, medians), the
logits processor's own time per token, and compile time for 1, 10 and 100 tools.

    python benchmarks/bench_grammar.py [--vocab 32000] [--layers 4] [--hidden 512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, PreTrainedTokenizerFast

from toolace_integrations.format.tools import FunctionSpec, ToolChoice, normalize_tools
from toolace_integrations.local.grammar import GrammarConstraint, tool_call_grammar
from toolace_integrations.testing.checkpoints import LLAMA3_SPECIAL_TOKENS


def corpus(limit_bytes: int) -> list[str]:
    """Python sources from the standard library and site-packages, up to ``limit_bytes``."""
    texts, size = [], 0
    for root in (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]):
        for path in sorted(Path(root).rglob("*.py")):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            texts.append(text)
            size += len(text)
            if size >= limit_bytes:
                return texts
    return texts


def build_tokenizer(vocab: int, corpus_mb: int) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=list(LLAMA3_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus(corpus_mb * 1_000_000), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )


def make_tools(count: int) -> list[FunctionSpec]:
    """``count`` distinct tools with several typed parameters each."""
    tools = []
    for i in range(count):
        properties = {
            f"query_{i}": {"type": "string"},
            "limit": {"type": "integer", "minimum": 1},
            "threshold": {"type": "number"},
            "verbose": {"type": "boolean"},
            "mode": {"type": "string", "enum": ["fast", "exact", f"custom_{i}"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "window": {
                "type": "object",
                "properties": {"start": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["start"],
            },
        }
        function = {
            "name": f"service_{i}.lookup",
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": [f"query_{i}", "limit"],
            },
        }
        tools.append(function)
    return normalize_tools(tools)


class Clock(LogitsProcessor):
    """Runs an optional logits processor and timestamps every decoding step.

    The gaps between consecutive calls are whole decode steps (forward pass, sampling and the
    processor), free of prefill and of how long each run happens to be.
    """

    def __init__(self, inner: Any = None) -> None:
        self.inner, self.stamps, self.inside = inner, [], 0.0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> Any:
        start = time.perf_counter()
        self.stamps.append(start)
        if self.inner is not None:
            scores = self.inner(input_ids, scores)
            self.inside += time.perf_counter() - start
        return scores

    def steps(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]


def step_costs(
    model: Any,
    constraint: GrammarConstraint,
    tools: list[FunctionSpec],
    prompt: torch.Tensor,
    *,
    tokens: int,
    runs: int,
    pad_id: int,
) -> tuple[float, float, float]:
    """Median ms per decode step free and constrained (``required``), and ms in the processor.

    Runs are interleaved, so machine load hits both alike; the free runs never stop early.
    """

    def run(constrained: bool, seed: int) -> Clock:
        inner = constraint.logits_processor(tools, ToolChoice("required")) if constrained else None
        clock = Clock(inner)
        torch.manual_seed(seed)
        with torch.no_grad():
            model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=True,
                max_new_tokens=tokens,
                min_new_tokens=0 if constrained else tokens,
                logits_processor=[clock],
                pad_token_id=pad_id,
            )
        return clock

    run(False, 0)  # warm up
    run(True, 0)
    free: list[float] = []
    forced: list[float] = []
    inside, calls = 0.0, 0
    for seed in range(runs):
        free += run(False, seed).steps()
        clock = run(True, seed)
        forced += clock.steps()
        inside, calls = inside + clock.inside, calls + len(clock.stamps)
    return statistics.median(free) * 1e3, statistics.median(forced) * 1e3, inside / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--corpus-mb", type=int, default=40)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=96, help="max new tokens per run")
    parser.add_argument("--runs", type=int, default=8, help="runs per variant (interleaved)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    tokenizer = build_tokenizer(args.vocab, args.corpus_mb)
    print(
        f"tokenizer: byte-level BPE, {len(tokenizer)} tokens, "
        f"trained in {time.perf_counter() - start:.1f} s"
    )
    padded = -(-len(tokenizer) // 64) * 64
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=padded,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=8,
        num_key_value_heads=4,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval()
    stop = [tokenizer.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|eom_id|>")]
    print(
        f"model: Llama {args.layers} layers, hidden {args.hidden}, vocab {padded} (padded); "
        f"torch threads {torch.get_num_threads()}"
    )

    start = time.perf_counter()
    constraint = GrammarConstraint(tokenizer, padded, stop)
    print(f"GrammarConstraint (xgrammar TokenizerInfo): {time.perf_counter() - start:.2f} s")

    print("\ncompile time (cache cleared), grammar text + xgrammar compile:")
    compile_times = {}
    for count in (1, 10, 100):
        tools = make_tools(count)
        samples = []
        for _ in range(3):
            constraint.clear_cache()
            t0 = time.perf_counter()
            text = tool_call_grammar(tools, ToolChoice("required"))
            t1 = time.perf_counter()
            constraint.compile(text)
            samples.append((t1 - t0, time.perf_counter() - t1))
        text_s, compile_s = min(samples, key=sum)
        compile_times[count] = text_s + compile_s
        print(
            f"  {count:>3} tools: {len(text):>7} chars, text {text_s * 1e3:7.1f} ms, "
            f"compile {compile_s * 1e3:7.1f} ms, total {(text_s + compile_s) * 1e3:7.1f} ms"
        )
    t0 = time.perf_counter()
    constraint.compile(text)
    print(f"  cached 100-tool compile: {(time.perf_counter() - t0) * 1e6:.0f} us")

    tools = make_tools(10)
    prompt = torch.tensor([tokenizer.encode("Call the lookup service for the weather in Paris.")])
    p, c, m = step_costs(
        model, constraint, tools, prompt, tokens=args.tokens, runs=args.runs,
        pad_id=tokenizer.eos_token_id,
    )  # fmt: skip
    print(
        f"\nper-token decode step (medians over {args.runs} interleaved runs each, 10 tools, "
        "tool_choice=required):"
    )
    print(f"  unconstrained {p:7.2f} ms/token  ({1e3 / p:6.1f} tokens/s)")
    print(f"  constrained   {c:7.2f} ms/token  ({1e3 / c:6.1f} tokens/s)")
    print(f"  ratio constrained/unconstrained: {c / p:.3f}  (overhead {100 * (c / p - 1):+.1f}%)")
    print(f"  time inside the xgrammar processor: {m:.3f} ms/token ({100 * m / p:.1f}% of a step)")
    ok = c / p < 1.10 and compile_times[100] < 1.0
    print(f"\ntargets (overhead < 10%, 100-tool compile < 1 s): {'met' if ok else 'NOT met'}")
    sys.exit(0)


if __name__ == "__main__":
    main()
