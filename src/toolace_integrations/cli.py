"""The ``toolace-integrations`` command: a LangGraph agent demo and an interactive chat.

Both run ``langchain.agents.create_agent`` with :class:`~toolace_integrations.ChatToolACE` and
the tools of :mod:`toolace_integrations.demo`, printing every model call (its ToolACE call text
and the parsed calls, time and tokens), every tool result and the final answer. Without
``--model`` they use a tiny model trained on first run on synthetic dialogs: a plumbing demo
that only knows arithmetic and unit questions shaped like its training data.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, TextIO

_EXAMPLES = """\
examples:
  toolace-integrations demo
  toolace-integrations demo --question "What is 12 * 7?" --question "Convert 3.5 km to mi."
  toolace-integrations demo --model Team-ACE/ToolACE-8B     # the real model (16 GB download)
  toolace-integrations demo --model /models/ToolACE-8B      # a local copy
  toolace-integrations demo --evaluate 50                   # score the tiny demo model
  toolace-integrations chat                                 # type questions; 'exit' or Ctrl-D
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
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    if args.command == "demo" and args.evaluate:
        return _evaluate(args)
    agent = _build_agent(args)
    if args.command == "demo":
        for question in args.question or _DEFAULT_QUESTIONS:
            _run_turn(agent, [], question, args.max_steps)
        return 0
    return _chat(agent, args.max_steps)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolace-integrations",
        description="Run ToolACE as a LangGraph tool-calling agent over demo tools "
        "(a calculator and a unit converter).",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="{demo,chat}")
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
        type=int,
        metavar="N",
        help="instead, score the tiny demo model's calls on N held-out questions",
    )
    chat = commands.add_parser(
        "chat", help="an interactive agent chat with conversation memory", epilog=_EXAMPLES
    )
    for sub in (demo, chat):
        model = sub.add_mutually_exclusive_group()
        model.add_argument(
            "--model",
            metavar="PATH_OR_ID",
            help="Hugging Face id or local folder (default: the tiny demo model, built on "
            "first use and cached in $TOOLACE_CACHE or ~/.cache/toolace-integrations)",
        )
        model.add_argument(
            "--random-weights",
            action="store_true",
            help="use an untrained tiny model: shows the plumbing, answers are noise",
        )
        sub.add_argument(
            "--retrain", action="store_true", help="rebuild the cached tiny demo model"
        )
        sub.add_argument(
            "--max-new-tokens", type=int, default=128, help="tokens per model call (128)"
        )
        sub.add_argument(
            "--max-steps", type=int, default=6, help="model calls per question before giving up"
        )
        sub.add_argument(
            "--no-grammar",
            action="store_true",
            help="decode freely instead of constraining calls with the grammar (xgrammar)",
        )
    return parser


def _model_path(args: argparse.Namespace) -> str:
    from toolace_integrations import demo

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
    path = demo.ensure_demo_model(folder, progress=_ProgressLine(sys.stderr))
    print(_TINY_NOTE)
    return path


def _evaluate(args: argparse.Namespace) -> int:
    from toolace_integrations.demo import evaluate_demo_model

    path = args.model or _model_path(args)
    score = evaluate_demo_model(path, questions=args.evaluate)
    print(
        f"{score.questions} held-out questions: right tool {score.tools:.0%}, "
        f"calls exactly right {score.calls:.0%}, final answers exactly right "
        f"{score.answers:.0%}, second-question calls exactly right {score.later_turns:.0%}"
    )
    return 0


def _build_agent(args: argparse.Namespace) -> Any:
    try:
        from langchain.agents import create_agent

        from toolace_integrations.langchain import ChatToolACE
    except ImportError as error:
        raise SystemExit(
            f"The agent needs LangChain ({error.name} is missing): "
            'pip install "toolace-integrations[langchain]" langchain'
        ) from error
    constrained = not args.no_grammar and importlib.util.find_spec("xgrammar") is not None
    if not args.no_grammar and not constrained:
        print('xgrammar is not installed, so decoding is unconstrained (pip install '
              '"toolace-integrations[grammar]").', file=sys.stderr)  # fmt: skip
    path = _model_path(args)
    started = time.perf_counter()
    llm = ChatToolACE(
        model=path,
        max_tokens=args.max_new_tokens,
        temperature=None,
        constrained_decoding=constrained,
    ).load()
    from toolace_integrations.demo import langchain_tools

    tools = langchain_tools()
    names = ", ".join(tool.name for tool in tools)
    print(f"Loaded in {time.perf_counter() - started:.1f} s. Tools: {names}")
    return create_agent(llm, tools)


def _run_turn(agent: Any, history: list[Any], question: str, max_steps: int) -> list[Any]:
    """Ask one question, print the transcript, and return the conversation with the answer."""
    from langchain_core.messages import HumanMessage
    from langgraph.errors import GraphRecursionError

    print(f"\nUser: {question}")
    messages = [*history, HumanMessage(question)]
    config = {"recursion_limit": 2 * max_steps + 1}
    started = last = time.perf_counter()
    try:
        stream = agent.stream({"messages": messages}, config, stream_mode="updates")
        for update in stream:
            now = time.perf_counter()
            for node in (update or {}).values():
                for message in (node or {}).get("messages", []):
                    _print_message(message, now - last)
                    messages.append(message)
            last = now
    except GraphRecursionError:
        print(f"  (stopped: no final answer after {max_steps} model calls)")
    print(f"  total {time.perf_counter() - started:.2f} s")
    return messages


def _print_message(message: Any, seconds: float, out: TextIO | None = None) -> None:
    from toolace_integrations.format.parsing import format_tool_calls

    out = out or sys.stdout
    if message.type == "tool":
        print(f"  tool   {message.name} -> {message.content}  ({seconds:.2f} s)", file=out)
        return
    if message.type != "ai":
        return
    usage = message.usage_metadata or {}
    tokens = f"{usage.get('input_tokens', '?')} prompt + {usage.get('output_tokens', '?')} new"
    print(f"  model  {seconds:.2f} s, {tokens} tokens", file=out)
    calls = [(call["name"], call["args"]) for call in message.tool_calls]
    raw = message.response_metadata.get("raw_output")
    if calls or raw:
        print(f"    ToolACE: {raw if raw is not None else format_tool_calls(calls)}", file=out)
    for call in message.tool_calls:
        arguments = json.dumps(call["args"], ensure_ascii=False)
        print(f"    call   {call['name']} {arguments}  id={call['id']}", file=out)
    for invalid in message.invalid_tool_calls:
        print(f"    invalid call {invalid.get('args')!r}: {invalid.get('error')}", file=out)
    if not message.tool_calls and message.content:
        print(f"Assistant: {message.text}", file=out)


def _chat(agent: Any, max_steps: int) -> int:
    print("Ask about arithmetic or unit conversions; 'exit' or Ctrl-D quits.")
    history: list[Any] = []
    while True:
        try:
            question = input("\nyou> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        if question.lower() in ("exit", "quit"):
            return 0
        if question:
            try:
                history = _run_turn(agent, history, question, max_steps)
            except KeyboardInterrupt:
                print("\n  (interrupted; that question is dropped)")


class _ProgressLine:
    """Training progress on one terminal line (or every tenth on a non-terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.perf_counter()

    def __call__(self, step: int, total: int, loss: float) -> None:
        tty = self.out.isatty()
        if not tty and step % max(1, total // 10) and step != total:
            return
        elapsed = time.perf_counter() - self.started
        line = f"  step {step}/{total}  loss {loss:.3f}  {elapsed:.0f} s"
        print(f"\r{line}" if tty else line, end="" if tty and step < total else "\n",
              file=self.out, flush=True)  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
