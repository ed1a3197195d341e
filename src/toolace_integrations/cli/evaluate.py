"""``toolace-integrations eval``: BFCL's single-turn categories through an adapter, scored."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

from toolace_integrations.cli import add_prompt_format
from toolace_integrations.errors import ToolACEError

_EXAMPLES = """\
examples:
  toolace-integrations eval --model Team-ACE/ToolACE-8B                   # GPU if present
  toolace-integrations eval --base-url http://localhost:8000/v1 --concurrency 64
  toolace-integrations eval --model /models/ToolACE-8B --categories simple_python irrelevance \\
      --limit 50 --framework llama-index --no-constrained --out plain.jsonl
  toolace-integrations eval --model /models/ToolACE-8B --resume      # go on after Ctrl-C

categories: simple_python simple_java simple_javascript multiple parallel parallel_multiple
  live_simple live_multiple live_parallel live_parallel_multiple irrelevance live_irrelevance
  live_relevance (multi-turn and agentic categories are not supported)
"""


def add_parser(commands: Any, at_least_one: Any) -> None:
    """Add the ``eval`` subcommand to the ``toolace-integrations`` subparsers."""
    sub = commands.add_parser(
        "eval",
        help="score the model on BFCL's single-turn categories through an adapter",
        description="Run BFCL v4's single-turn entries through ChatToolACE (or ToolACELLM) as "
        "an agent would: each entry's functions bound as tools, its question asked greedily; "
        "the answer's calls are scored by BFCL's AST and relevance rules. Needs the BFCL "
        'data: pip install --no-deps "bfcl-eval==2026.3.23".',
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(subparser=sub)
    sub.add_argument(
        "--model",
        metavar="ID_OR_FOLDER",
        help="Hugging Face id or local folder; with --base-url, the served model name "
        "(default: the server's first model)",
    )
    sub.add_argument(
        "--base-url",
        metavar="URL",
        help="generate on this OpenAI-compatible (vLLM) server, e.g. http://localhost:8000/v1",
    )
    sub.add_argument(
        "--framework",
        choices=("langchain", "llama-index"),
        default="langchain",
        help="the adapter to go through: ChatToolACE or ToolACELLM (langchain)",
    )
    sub.add_argument(
        "--categories", nargs="+", metavar="NAME", help="BFCL categories (default: all listed)"
    )
    sub.add_argument(
        "--limit", type=at_least_one, metavar="N", help="the first N entries of each category"
    )
    sub.add_argument(
        "--concurrency",
        type=at_least_one,
        default=8,
        metavar="N",
        help="questions in flight at once; the local scheduler or the server batches them (8)",
    )
    sub.add_argument(
        "--out",
        type=Path,
        default=Path("bfcl-results.jsonl"),
        metavar="FILE",
        help="JSONL results, one record per entry; must be new unless --resume "
        "(bfcl-results.jsonl)",
    )
    sub.add_argument(
        "--resume", action="store_true", help="keep the records in --out; ask only the rest"
    )
    sub.add_argument(
        "--no-constrained",
        action="store_true",
        help="decode without the tool-call grammar, to measure what the grammar adds",
    )
    sub.add_argument(
        "--max-new-tokens", type=at_least_one, default=512, metavar="N", help="per answer (512)"
    )
    sub.add_argument(
        "--device-map",
        metavar="MAP",
        help="transformers device_map for a local model (default: auto on CUDA, else CPU)",
    )
    add_prompt_format(sub)
    sub.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the table (matplotlib)")


def run(args: argparse.Namespace, served_model: Any) -> int:
    """Run ``eval`` with parsed ``args``; argument mistakes end as one argparse error line."""
    from toolace_integrations.evaluation import data
    from toolace_integrations.evaluation.evaluate import evaluate, make_llm, select_entries
    from toolace_integrations.evaluation.report import format_table, plot_table
    from toolace_integrations.evaluation.runner import read_records

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        args.subparser.error("--plot needs matplotlib: pip install matplotlib")
    if args.base_url and args.device_map:
        args.subparser.error("--device-map places a local model; --base-url uses the server's")
    if not args.model and not args.base_url:
        args.subparser.error("name the model with --model (or a server with --base-url)")
    if args.out.exists() and not args.resume:
        args.subparser.error(
            f"{args.out} already holds results: add --resume, or choose another --out"
        )
    try:
        categories = data.check_categories(args.categories or data.CATEGORIES)
        entries = select_entries(categories, args.limit)
        model = args.model or served_model(args.base_url)
        llm = make_llm(
            model,
            framework=args.framework,
            base_url=args.base_url,
            constrained=not args.no_constrained,
            max_new_tokens=args.max_new_tokens,
            device_map=args.device_map,
            prompt_format=args.prompt_format,
        ).load()
    except ToolACEError as error:
        args.subparser.error(str(error))
    where = f" on {args.base_url}" if args.base_url else ""
    grammar = "unconstrained" if args.no_constrained else "grammar-constrained"
    profile = llm.prompt_profile().name
    print(f"Model: {model}{where}, {args.framework}, greedy, {grammar}, {profile} prompt; "
          f"{len(entries)} entries")  # fmt: skip
    started = time.perf_counter()
    resumed = len(read_records(args.out, (e.id for e in entries))) if args.resume else 0
    with _Progress(len(entries), resumed) as progress:
        rows, records = evaluate(
            llm,
            framework=args.framework,
            entries=entries,
            concurrency=args.concurrency,
            out=args.out,
            resume=args.resume,
            progress=progress.update,
        )
    print(format_table(rows))
    failed = sum(record.error_type == "generation_error" for record in records)
    seconds = time.perf_counter() - started
    print(f"{len(records)} entries in {seconds:.1f} s; records in {args.out}")
    if failed:
        print(f"{failed} entries failed to generate (see error in {args.out})", file=sys.stderr)
    if args.plot:
        plot_table(rows, args.plot)
        print(f"Chart: {args.plot}")
    return 0


class _Progress:
    """A tqdm bar on stderr with the running accuracy and an ETA."""

    def __init__(self, total: int, initial: int) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=total, initial=initial, unit="entry", file=sys.stderr, dynamic_ncols=True
        )
        self._done = self._correct = 0

    def update(self, record: Any) -> None:
        self._done += 1
        self._correct += bool(record.valid)
        self._bar.set_postfix_str(f"accuracy {100 * self._correct / self._done:.1f}%")
        self._bar.update()

    def __enter__(self) -> _Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
