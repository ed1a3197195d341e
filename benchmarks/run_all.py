"""Benchmark the engine against raw transformers, side by side in one run.

Usage::

    python benchmarks/run_all.py            # full run (a few minutes on 2 cores)
    python benchmarks/run_all.py --quick    # smoke run (about a minute)
    python benchmarks/run_all.py --write    # also write its section of benchmarks/RESULTS.md
    python benchmarks/run_all.py --tokenizer llama3   # Meta's Llama-3.1 tokenizer (128k)

It builds a random-weight Llama offline (4 layers, hidden 512, ToolACE's tokenizer layout and
chat template), then measures, with variants interleaved and medians over repeats:

(a) ``chat.run_chat`` (the path ``invoke`` takes) vs ``apply_chat_template`` + ``generate``;
(b) a 5-step agent loop over a ~4k-token tool prompt, prefix cache on vs off;
(c) 8 prompts through ``generate_batch`` vs one by one vs raw left-padded ``generate``;
(d) peak memory of two consumers of one checkpoint vs one, in fresh interpreters;
(e) 8 concurrent agent steps (``asyncio.gather`` of ``ainvoke``) vs 8 sequential ones, in mixes
    of tool sets, lengths and constraints; then 1, 8 and 16 agents x 5 steps: total and TTFT;
(f) the stream decoder on a 2,000-token answer, incremental vs re-decoding every token.

Greedy outputs are compared as a sanity check. The stop tokens are suppressed during (a)-(c) so
both sides always generate exactly the requested number of tokens.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Set before torch loads libgomp. With the default (spinning) wait policy, on a machine whose
# cores are busy with other work, `generate` called from the main thread runs up to 10x slower
# than the same call from a worker thread (our streaming engine's), which would make the raw
# baseline look slow for reasons that have nothing to do with our code. Passive waiting makes
# both threads equal; pass OMP_WAIT_POLICY=ACTIVE in the environment to measure the default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import _cases  # noqa: E402
import _concurrency  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from _harness import (  # noqa: E402
    MODEL_SHAPE,
    Row,
    Section,
    build_model,
    load_average,
    machine_description,
    no_stop_tokens,
    verdict,
    write_section,
)

from toolace_integrations.local.engine import ModelSpec, TransformersEngine  # noqa: E402
from toolace_integrations.testing import checkpoints as testing  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

FULL = {
    "a": {"tokens": 128, "repeats": 5},
    "b": {"target_tokens": 4000, "min_tools": 30, "steps": 5, "tokens": 16, "repeats": 3},
    "c": {"tokens": 48, "repeats": 3},
    "e": {"repeats": 2, "agents": (1, 8, 16), "steps": 5},
    "f": {"tokens": 2000, "repeats": 3},
}
QUICK = {
    "a": {"tokens": 24, "repeats": 2},
    "b": {"target_tokens": 800, "min_tools": 5, "steps": 3, "tokens": 8, "repeats": 1},
    "c": {"tokens": 24, "repeats": 2},
    "e": {"repeats": 1, "agents": (1, 4), "steps": 2},
    "f": {"tokens": 300, "repeats": 1},
}


def model_folder(tokenizer: str = "toy") -> str:
    """The benchmark checkpoint, built once per model shape, tokenizer and builder version."""
    source = inspect.getsource(testing) + json.dumps(MODEL_SHAPE, sort_keys=True) + tokenizer
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    folder = ROOT / ".toolace-cache" / f"benchmark-model-{digest}"
    if not (folder / "config.json").exists():
        print(f"building the benchmark model in {folder} ...", flush=True)
        build_model(str(folder), tokenizer)
    return str(folder)


def memory(folder: str, *, adapters: bool) -> Section:
    """(d) Peak RSS of one vs two consumers of the same checkpoint, one interpreter each."""
    modes = ["engine-1", "engine-2", "copies-1", "copies-2"]
    if adapters:
        modes += ["adapters-1", "adapters-2"]
    probe = HERE / "_memory_probe.py"
    found: dict[str, dict[str, float]] = {}
    for mode in modes:
        command = [sys.executable, str(probe), mode, folder] + (["--adapters"] if adapters else [])
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory probe {mode} failed:\n{done.stderr[-3000:]}")
        found[mode] = json.loads(done.stdout.strip().splitlines()[-1])

    def grown(mode: str) -> float:
        return found[mode]["peak_mib"] - found[mode]["baseline_mib"]

    def row(what: str, one: str, two: str, target: str, contrast: bool) -> Row:
        ratio = grown(two) / grown(one)
        total = found[two]["peak_mib"] / found[one]["peak_mib"]
        copies = int(found[two]["copies"])
        return Row(
            "d",
            what,
            f"+{grown(two):.0f} MiB (peak {found[two]['peak_mib']:.0f})",
            f"+{grown(one):.0f} MiB (peak {found[one]['peak_mib']:.0f})",
            f"{ratio:.2f}× (total {total:.2f}×)",
            target,
            "—" if contrast else verdict(ratio <= 1.1 and copies == 1),
            f"model copies in process: {copies}",
        )

    section = Section()
    if adapters:
        section.rows.append(
            row(
                "ChatToolACE + ToolACELLM on one folder vs ChatToolACE alone, growth over imports",
                "adapters-1",
                "adapters-2",
                "≤ ~1.0×",
                False,
            )
        )
    section.rows.append(
        row(
            "load_engine twice (equal specs) vs once, growth over imports",
            "engine-1",
            "engine-2",
            "≤ ~1.0×",
            False,
        )
    )
    section.rows.append(
        row("contrast: two from_pretrained copies vs one", "copies-1", "copies-2", "—", True)
    )
    baseline = min(v["baseline_mib"] for v in found.values())
    section.details.append(
        f"(d) Peak RSS after imports alone: {baseline:.0f} MiB; each mode also generates "
        "8 tokens with every consumer. Growth = peak RSS - peak after imports."
    )
    return section


def render(rows: list[Row]) -> str:
    """The results as one markdown table."""
    lines = [
        "| | Comparison | Ours | Reference | Ratio | Target | Met | Sanity (greedy output) |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for r in rows:
        cells = [r.case, r.what, r.ours, r.reference, r.ratio, r.target, r.met, r.sanity]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


NOTES = """\
### How to read this

- Every comparison runs its variants interleaved in one process, rotating the order on each
  repeat, and reports medians; the machine may be shared, so absolute times are noisy, but the
  ratios are measured under the same load. "cpu" ratios use process CPU time, which other
  processes disturb much less than wall time.
- The model is random (4 layers, hidden 512, vocabulary {vocab}: the byte-level BPE trainer
  cannot reach more on the small built-in corpus), so model steps are cheap and any per-token
  overhead of ours shows up larger than it would with ToolACE-8B.
- Stop tokens are suppressed with a forward hook on the output layer (shared by both sides), so
  every run generates exactly the stated number of tokens.
- (a)-(c) run unconstrained (`constrained=False`): grammar cost is measured separately by
  `benchmarks/bench_grammar.py`. "No prefix cache" swaps in a `PrefixCache(max_entries=0)`,
  which is what `TransformersEngine(spec, prefix_cache_entries=0)` builds; one model object
  serves every variant.
- `OMP_WAIT_POLICY=PASSIVE` is set before torch loads (unless already set): with libgomp's
  spinning default, on cores busy with other work, `generate` called from the main thread (the
  raw baseline, `generate_batch`) ran up to 10x slower than from a worker thread (our
  streaming path), which would have measured the scheduler rather than our code.
- (a) The raw side tokenizes with `apply_chat_template`; with this small tokenizer that differs
  by a token or two from our encoding (we tokenize message contents separately so they cannot
  turn into control tokens, and byte-level BPE splits `\\n\\n` + word differently at that
  boundary; Llama-3's pre-tokenizer keeps `\\n\\n` whole either way), so greedy equality is
  checked against raw `generate` on our exact ids.
- (b) TTFT is the time from calling `engine.stream` to its first event. Each step appends the
  answer, a tool result and, every other step, a user turn.
- (d) Peak RSS is read from `VmHWM` in `/proc/self/status`: on Linux `ru_maxrss` survives
  fork + exec, so a probe started by this (large) process would report the parent's peak.
"""


def main() -> None:
    """Parse the flags, run the benchmarks and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (~1 minute)")
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md")
    parser.add_argument(
        "--only", default="abcdef", help="which benchmarks to run, e.g. 'ab' (default: all)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own choice); 1 steadies a busy machine",
    )
    parser.add_argument(
        "--tokenizer",
        choices=("toy", "llama3"),
        default="toy",
        help="the model's tokenizer: the small built-in one, or Meta's Llama-3.1 (128k tokens)",
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()
    machine = machine_description()
    print("\n".join(machine), flush=True)

    folder = model_folder(args.tokenizer)
    engine = TransformersEngine(ModelSpec(model=folder), prefix_cache_entries=0)
    vocab = engine.model.config.vocab_size
    sections: list[Section] = []
    with no_stop_tokens(engine.model, engine.stop_token_ids):
        if "a" in args.only:
            print("(a) engine overhead ...", flush=True)
            sections.append(_cases.overhead(engine, **settings["a"]))
        if "b" in args.only:
            print("(b) agent loop, prefix cache on/off ...", flush=True)
            sections.append(_cases.agent_loop(engine, **settings["b"]))
        if "c" in args.only:
            print("(c) batching ...", flush=True)
            sections.append(_cases.batching(engine, **settings["c"]))
        if "f" in args.only:
            print("(f) stream decoder ...", flush=True)
            sections.append(_concurrency.stream_decoder(engine, **settings["f"]))
    if "e" in args.only:
        print("(e) concurrent agent steps ...", flush=True)
        sections.append(_concurrency.agent_steps(folder, **settings["e"]))
    if "d" in args.only:
        print("(d) memory, fresh interpreters ...", flush=True)
        adapters = all(
            importlib.util.find_spec(f"toolace_integrations.{name}") is not None
            for name in ("langchain", "llama_index")
        )
        sections.append(memory(folder, adapters=adapters and not args.quick))

    elapsed = time.perf_counter() - started
    rows = [row for section in sections for row in section.rows]
    if args.quick:  # the targets are for the full workloads; a smoke run only shows they run
        for row in rows:
            row.met = "n/a (quick)" if row.met != "—" else row.met
    table = render(rows)
    details = [line for section in sections for line in section.details]
    footer = (
        f"- Model: random Llama, {MODEL_SHAPE['layers']} layers, hidden "
        f"{MODEL_SHAPE['hidden']}, vocabulary {vocab}, float32, CPU\n"
        f"- Run: {'--quick' if args.quick else 'full'}, {elapsed:.0f} s; load average at end: "
        f"{load_average()}"
    )
    print()
    print(table)
    print()
    print("\n\n".join(details))
    print(footer)
    if args.write:
        toy = args.tokenizer == "toy"
        vocabulary = "the small built-in tokenizer" if toy else "Meta's Llama-3.1 tokenizer"
        command = "python benchmarks/run_all.py --write" + ("" if toy else " --tokenizer llama3")
        parts = [
            f"## The engine against raw transformers: {vocabulary} (vocabulary {vocab})",
            f"Written by `{command}` (`make bench` runs it without `--write`).",
            "### Machine\n\n" + "\n".join(machine) + "\n" + footer,
            "### Results\n\n" + table,
            "\n\n".join(details),
        ]
        if toy:
            parts.append(NOTES.format(vocab=vocab))
        write_section(f"run_all {args.tokenizer}", "\n\n".join(parts))


if __name__ == "__main__":
    main()
