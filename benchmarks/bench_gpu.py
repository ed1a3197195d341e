"""GPU benchmark: Llama-3.1-8B-shaped random weights, our engine against raw ``generate``.

Usage::

    python benchmarks/bench_gpu.py            # on a CUDA machine (finishes in under 8 minutes)
    python benchmarks/bench_gpu.py --smoke    # anywhere: a tiny config on CPU, to check it runs

It builds Llama-3.1-8B's exact architecture with random bf16 weights directly on the GPU (no
download: decoding speed does not depend on the weights' values), gives it the ToolACE tokenizer
layout of :func:`toolace_integrations.testing.make_tiny_toolace` (a small vocabulary; the model's
output layer keeps all 128,256 rows), and prints one table:

- decode tokens/s at batch 1: raw ``model.generate``, our path (dynamic cache), our path with
  ``cache_implementation="static"`` (compiled), each against the memory-bandwidth ceiling
  (bytes of weights / measured copy bandwidth);
- time per token constrained (tool-call grammar) vs free;
- step-2 time to first token on a ~4k-token tool prompt, prefix reuse on vs off;
- 8 and 32 concurrent agent steps (``asyncio.gather`` of turns) vs the same steps sequential.

End tokens are masked so every run generates exactly the requested number of tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import no_stop_tokens, tool_catalogue  # noqa: E402

import toolace_integrations.local.engine as engine_module  # noqa: E402
from toolace_integrations.core import chat  # noqa: E402
from toolace_integrations.core.generation import GenerationRequest, ModelSpec, SamplingParams  # noqa: E402
from toolace_integrations.format.prompt import Message  # noqa: E402
from toolace_integrations.format.tools import ToolChoice  # noqa: E402
from toolace_integrations.testing import make_tiny_toolace  # noqa: E402

LLAMA_31_8B = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_parameters": {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
}
SMOKE = {
    **LLAMA_31_8B,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 8192,
}


def build_engine(smoke: bool) -> engine_module.TransformersEngine:
    """Our engine over a random model of the chosen shape, built in place (no weights on disk)."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    device = "cpu" if smoke else "cuda"
    dtype = torch.float32 if smoke else torch.bfloat16
    folder = make_tiny_toolace(Path(tempfile.mkdtemp()) / "tokenizer", vocab_size=4000)
    tiny = LlamaConfig.from_pretrained(folder)
    config = LlamaConfig(
        **(SMOKE if smoke else LLAMA_31_8B),
        bos_token_id=tiny.bos_token_id,
        eos_token_id=tiny.eos_token_id,
        pad_token_id=tiny.pad_token_id,
        dtype=str(dtype).removeprefix("torch."),
    )
    with torch.device(device):
        torch.set_default_dtype(dtype)
        model = LlamaForCausalLM(config)
        torch.set_default_dtype(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    original = engine_module.load_model
    engine_module.load_model = lambda spec: model  # type: ignore[assignment]
    try:
        return engine_module.TransformersEngine(ModelSpec(model=folder))
    finally:
        engine_module.load_model = original


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def clock(function: Callable[[], Any], repeats: int = 1) -> float:
    """The fastest of ``repeats`` runs, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        function()
        _sync()
        best = min(best, time.perf_counter() - start)
    return best


def bandwidth_gbs(smoke: bool) -> float:
    """Measured device memory bandwidth: a large copy reads and writes every byte once."""
    size = (64 if smoke else 4096) * 2**20
    device = "cpu" if smoke else "cuda"
    source = torch.empty(size, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds = clock(lambda: target.copy_(source), repeats=5)
    return 2 * size / seconds / 1e9


def request(text: str, tokens: int, **extra: Any) -> GenerationRequest:
    sampling = SamplingParams(max_new_tokens=tokens, **extra)
    return chat.build_request([Message("user", text)], sampling=sampling, constrained=False)


def decode_rates(engine: Any, tokens: int) -> dict[str, float]:
    """Decode tokens/s at batch 1: (N-1) tokens over the time N tokens take beyond 1 token."""
    prompt = "Write a long story about a lighthouse keeper and the sea. " * 2
    ids = torch.tensor([engine.encode(request(prompt, 1).messages)], device=engine.model.device)

    def raw(n: int) -> Callable[[], Any]:
        return lambda: engine.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False
        )

    def ours(n: int, **extra: Any) -> Callable[[], Any]:
        return lambda: engine.generate(request(prompt, n, reuse_prefix=False, **extra))

    rates = {}
    for name, make in (
        ("raw generate", raw),
        ("ours, dynamic cache", ours),
        ("ours, static cache (compiled)", lambda n: ours(n, cache_implementation="static")),
    ):
        make(tokens)()  # warm-up (and compilation for the static cache)
        rates[name] = (tokens - 1) / (clock(make(tokens), 2) - clock(make(1), 2))
    return rates


def constrained_per_token(engine: Any, tokens: int) -> dict[str, float]:
    """Seconds per generated token with the tool-call grammar and without."""
    tools = tool_catalogue(8)
    results = {}
    for name, constrained in (("free", False), ("constrained", True)):
        made = chat.build_request(
            [Message("user", "Search the weather service for Paris.")],
            tools,
            tool_choice=ToolChoice("required"),
            sampling=SamplingParams(max_new_tokens=tokens, reuse_prefix=False),
            constrained=constrained,
        )
        engine.generate(made)
        started = time.perf_counter()
        result = engine.generate(made)
        _sync()
        results[name] = (time.perf_counter() - started) / max(result.completion_tokens, 1)
    return results


def step_two_ttft(engine: Any, target_tokens: int) -> dict[str, float]:
    """Time to first token of an agent's second step on a ~``target_tokens`` tool prompt."""
    count = 8
    while count < 60:
        tools = tool_catalogue(count)
        first = chat.build_request([Message("user", "Find flights to Berlin.")], tools)
        if len(engine.encode(first.messages)) >= target_tokens:
            break
        count += 4
    history = [Message("user", "Find flights to Berlin.")]
    results = {}
    for name, reuse in (("prefix reuse on", True), ("prefix reuse off", False)):
        sampling = SamplingParams(max_new_tokens=8, reuse_prefix=reuse)
        engine.prefix_cache.clear()
        step_one = chat.build_request(history, tools, sampling=sampling, constrained=False)
        answer = engine.generate(step_one).text
        follow = [*history, Message("assistant", answer), Message("user", "And hotels there?")]
        step_two = chat.build_request(follow, tools, sampling=sampling, constrained=False)
        started = time.perf_counter()
        for _event in engine.stream(step_two):
            break
        _sync()
        results[name] = time.perf_counter() - started
    results["prompt tokens"] = float(len(engine.encode(step_two.messages)))
    return results


def concurrent_steps(engine: Any, count: int, tokens: int) -> dict[str, float]:
    """``count`` agent steps on one shared tool prompt: gathered vs one after another."""
    tools = tool_catalogue(40)
    sampling = SamplingParams(max_new_tokens=tokens)
    requests = [
        chat.build_request([Message("user", f"Task {i}: weather?")], tools, sampling=sampling)
        for i in range(count)
    ]

    async def gathered() -> None:
        await asyncio.gather(*(chat.arun_chat(engine, r) for r in requests))

    async def sequential() -> None:
        for r in requests:
            await chat.arun_chat(engine, r)

    asyncio.run(sequential())  # warm: the tool prompt is cached from here on
    return {
        "sequential": clock(lambda: asyncio.run(sequential())),
        "gathered": clock(lambda: asyncio.run(gathered())),
    }


def main() -> None:
    """Run every measurement and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU, a few tokens")
    args = parser.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs CUDA; run it with --smoke to check it on CPU")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    started = time.perf_counter()
    engine = build_engine(args.smoke)
    weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    bandwidth = bandwidth_gbs(args.smoke)
    ceiling = bandwidth * 1e9 / weights
    tokens = 16 if args.smoke else 128
    rows: list[tuple[str, str]] = []
    with no_stop_tokens(engine.model, engine.stop_token_ids):
        for name, rate in decode_rates(engine, tokens).items():
            rows.append((f"decode batch 1, {name}", f"{rate:.1f} tok/s ({rate / ceiling:.0%})"))
        rows.append(("bandwidth ceiling", f"{ceiling:.1f} tok/s ({bandwidth:.0f} GB/s measured)"))
        grammar = constrained_per_token(engine, 8 if args.smoke else 64)
        rows.append(
            (
                "per token, constrained vs free",
                f"{grammar['constrained'] * 1e3:.2f} ms vs {grammar['free'] * 1e3:.2f} ms "
                f"({grammar['constrained'] / grammar['free']:.2f}x)",
            )
        )
        ttft = step_two_ttft(engine, 300 if args.smoke else 4000)
        rows.append(
            (
                f"step-2 TTFT, {ttft['prompt tokens']:.0f}-token tool prompt",
                f"{ttft['prefix reuse on'] * 1e3:.0f} ms reuse on vs "
                f"{ttft['prefix reuse off'] * 1e3:.0f} ms off",
            )
        )
        for count in (4,) if args.smoke else (8, 32):
            steps = concurrent_steps(engine, count, 8 if args.smoke else 16)
            rows.append(
                (
                    f"{count} concurrent agent steps (gathered vs sequential)",
                    f"{steps['gathered']:.2f} s vs {steps['sequential']:.2f} s "
                    f"({steps['sequential'] / steps['gathered']:.2f}x faster)",
                )
            )
    device = "CPU (smoke)" if args.smoke else torch.cuda.get_device_name()
    print(f"\n| {device}, weights {weights / 1e9:.2f} GB | |\n| --- | ---: |")
    for what, value in rows:
        print(f"| {what} | {value} |")
    print(f"\n{time.perf_counter() - started:.0f} s in all")


if __name__ == "__main__":
    main()
