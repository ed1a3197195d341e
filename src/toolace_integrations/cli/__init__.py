"""The ``toolace-integrations`` command: an agent demo, an interactive chat and a BFCL eval.

``demo`` and ``chat`` run ``langchain.agents.create_agent`` with
:class:`~toolace_integrations.ChatToolACE` and the tools of :mod:`toolace_integrations.demo`,
printing every model call (its ToolACE call text and the parsed calls, time and tokens), every
tool result and the final answer. Without ``--model`` they use a tiny model trained on first run
on synthetic dialogs: a plumbing demo that only knows arithmetic and unit questions shaped like
its training data. ``--base-url`` runs them on a vLLM server instead of in this process.
``eval`` scores a model on BFCL's single-turn categories through the adapters
(:mod:`toolace_integrations.cli.evaluate`).

Mistakes in the arguments (a missing model folder, ``--max-new-tokens 0``) end the command
with one ``error:`` line and exit status 2, as argparse reports its own; Ctrl-C ends it with one
line and status 130.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from typing import get_args

from toolace_integrations.errors import ModelLoadError, ToolACEError
from toolace_integrations.format.profiles import PromptFormat

_EXAMPLES = """\
examples:
  toolace-integrations demo
  toolace-integrations demo --question "What is 12 * 7?" --question "Convert 3.5 km to mi."
  toolace-integrations demo --model Team-ACE/ToolACE-8B     # the real model (16 GB download)
  toolace-integrations demo --model /models/ToolACE-8B      # a local copy
  toolace-integrations demo --evaluate 50                   # score the tiny demo model
  toolace-integrations chat                                 # type questions; 'exit' or Ctrl-D
  toolace-integrations chat --base-url http://localhost:8000/v1   # on a vLLM server
  toolace-integrations eval --model Team-ACE/ToolACE-8B     # BFCL accuracy via the adapters
"""
_DEFAULT_QUESTIONS = ("What is 12 * 7?", "Convert 3.5 km to mi.", "Hello!")
_TINY_NOTE = (
    "Model: a tiny synthetic plumbing demo (2 layers, trained for minutes on generated "
    "dialogs). It only knows questions like the examples; use --model Team-ACE/ToolACE-8B "
    "for the real model."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "eval":
        from toolace_integrations.cli import evaluate

        try:
            return evaluate.run(args, _served_model)
        except KeyboardInterrupt:
            print("\nInterrupted; --resume goes on from the records written.", file=sys.stderr)
            return 130
    if args.base_url and (args.random_weights or args.retrain):
        args.subparser.error("--random-weights and --retrain build a model in this process; "
                             "--base-url uses the server's model")  # fmt: skip
    from transformers.utils import logging as transformers_logging

    from toolace_integrations.cli import session

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        try:
            if args.command == "demo" and args.evaluate:
                return _evaluate(args)
            agent, window = session.build_agent(_model_path(args), args)
        except ToolACEError as error:  # the user's mistake, told in one line
            args.subparser.error(str(error))
        if args.command == "demo":
            failed = False
            for question in args.question or _DEFAULT_QUESTIONS:
                failed |= not session.run_turn(agent, [], question, args.max_steps)[1]
            return int(failed)
        return session.chat(agent, window, args.max_steps)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        return 130


def _at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolace-integrations",
        description="Run ToolACE as a LangGraph tool-calling agent over demo tools "
        "(a calculator and a unit converter).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{demo,chat,eval}")
    demo = commands.add_parser(
        "demo",
        help="answer a few questions with an agent and print the transcript",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--question",
        action="append",
        metavar="TEXT",
        help="a question to ask (repeatable); default: an arithmetic, a unit and a chit-chat one",
    )
    demo.add_argument(
        "--evaluate",
        type=_at_least_one,
        metavar="N",
        help="instead, score the demo model's calls on N held-out questions",
    )
    chat = commands.add_parser(
        "chat",
        help="an interactive agent chat with conversation memory",
        description="Chat with an agent; the oldest turns are dropped when the conversation "
        "outgrows the model's context window.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for sub in (demo, chat):
        sub.set_defaults(subparser=sub)
        model = sub.add_mutually_exclusive_group()
        model.add_argument(
            "--model",
            metavar="PATH_OR_ID",
            help="Hugging Face id or local folder (default: the tiny demo model, built on "
            "first use and cached in $TOOLACE_CACHE or ~/.cache/toolace-integrations); with "
            "--base-url, the served model name (default: the server's first model)",
        )
        model.add_argument(
            "--random-weights",
            action="store_true",
            help="use an untrained tiny model: shows the plumbing, answers are noise",
        )
        sub.add_argument(
            "--base-url",
            metavar="URL",
            help="generate on this OpenAI-compatible (vLLM) server, e.g. http://localhost:8000/v1",
        )
        sub.add_argument(
            "--retrain", action="store_true", help="rebuild the cached tiny demo model"
        )
        sub.add_argument(
            "--max-new-tokens",
            type=_at_least_one,
            default=128,
            metavar="N",
            help="tokens per model call (128)",
        )
        sub.add_argument(
            "--max-steps",
            type=_at_least_one,
            default=6,
            metavar="N",
            help="model calls per question before giving up (6)",
        )
        sub.add_argument(
            "--no-grammar",
            action="store_true",
            help="decode freely instead of constraining calls with the grammar (xgrammar)",
        )
        add_prompt_format(sub)
    from toolace_integrations.cli import evaluate

    evaluate.add_parser(commands, _at_least_one)
    return parser


def add_prompt_format(parser: argparse.ArgumentParser) -> None:
    """The ``--prompt-format`` option of every command that runs a model."""
    parser.add_argument(
        "--prompt-format",
        choices=get_args(PromptFormat),
        default="auto",
        help="the checkpoint family's prompt (default: read from the model's name and "
        "tokenizer; Team-ACE/ToolACE-2-8B gets BFCL's own prompt)",
    )


def _model_path(args: argparse.Namespace) -> str:
    from toolace_integrations import demo

    if args.base_url:
        model = args.model or _served_model(args.base_url)
        print(f"Model: {model} on {args.base_url}")
        return str(model)
    if args.model:
        print(f"Model: {args.model}")
        return str(args.model)
    if args.random_weights:
        from toolace_integrations.testing import make_tiny_toolace

        print("Model: a tiny model with random weights; its answers are noise.")
        return make_tiny_toolace(tempfile.mkdtemp(prefix="toolace-random-"))
    folder = demo.default_demo_model_dir()
    if args.retrain:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    if not (folder / "demo-model.json").is_file():
        print(f"Training the tiny demo model into {folder} (first run only) ...", file=sys.stderr)
    from toolace_integrations.cli.session import ProgressLine

    path = demo.ensure_demo_model(folder, progress=ProgressLine(sys.stderr))
    print(_TINY_NOTE)
    return path


def _served_model(base_url: str) -> str:
    """The first model a server lists at ``/models`` (its id is also the tokenizer to load)."""
    import httpx

    from toolace_integrations.remote.request import api_key_for

    key = api_key_for(base_url, None)
    url = f"{base_url.rstrip('/')}/models"
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {key}"} if key else {})
        return str(response.raise_for_status().json()["data"][0]["id"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
        raise ModelLoadError(
            f"could not read the served model from {url} ({error}); is the server running? "
            "Name the model with --model."
        ) from error


def _evaluate(args: argparse.Namespace) -> int:
    from toolace_integrations.demo import evaluate_demo_model

    path = _model_path(args)
    score = evaluate_demo_model(path, questions=args.evaluate, base_url=args.base_url)
    print(
        f"{score.questions} held-out questions: right tool {score.tools:.0%}, "
        f"calls exactly right {score.calls:.0%}, final answers exactly right "
        f"{score.answers:.0%}, second-question calls exactly right {score.later_turns:.0%}"
    )
    return 0
