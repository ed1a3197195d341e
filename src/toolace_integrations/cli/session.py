"""The agent behind the command, its transcript, and the chat loop.

:func:`build_agent` loads the model and wraps it in a LangGraph agent whose model calls pass
through :class:`~toolace_integrations.cli.window.ConversationWindow`; :func:`run_turn` asks one
question and prints every step; :func:`chat` reads questions until ``exit`` or end of input.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from typing import Any, TextIO

from toolace_integrations.cli.window import ConversationWindow
from toolace_integrations.errors import InvalidSettingError, ToolACEError


def build_agent(model: str, args: argparse.Namespace) -> tuple[Any, ConversationWindow | None]:
    """A ``create_agent`` agent over the demo tools on ``model``, loaded now, and its window.

    The window is ``None`` when the model's context size is unknown (a server that does not say).

    Raises:
        ToolACEError: the model cannot be loaded or reached, or ``--max-new-tokens`` fills its
            whole context window.
    """
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
    started = time.perf_counter()
    llm = ChatToolACE(
        model=model,
        base_url=args.base_url,
        max_tokens=args.max_new_tokens,
        temperature=None,
        constrained_decoding=constrained,
        prompt_format=args.prompt_format,
    ).load()
    from toolace_integrations.demo import langchain_tools

    tools = langchain_tools()
    names = ", ".join(tool.name for tool in tools)
    profile = llm.prompt_profile().name
    print(f"Loaded in {time.perf_counter() - started:.1f} s ({profile} prompt). Tools: {names}")
    size = llm._context_size()
    if not size:
        return create_agent(llm, tools), None
    if args.max_new_tokens >= size:
        raise InvalidSettingError(
            f"--max-new-tokens {args.max_new_tokens} leaves no room for a prompt in the "
            f"model's {size}-token context window; use a smaller value."
        )
    window = ConversationWindow(llm.get_num_tokens_from_messages, size, args.max_new_tokens, print)
    return create_agent(llm, tools, middleware=[window]), window


def run_turn(
    agent: Any, history: list[Any], question: str, max_steps: int
) -> tuple[list[Any], bool]:
    """Ask one question and print the transcript.

    Returns:
        The conversation with the question and its answer, and ``True``; or ``history``
        unchanged and ``False`` when the turn failed (told in one line), e.g. when it does not
        fit the context window even alone.
    """
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
                    print_message(message, now - last)
                    messages.append(message)
            last = now
    except GraphRecursionError:
        print(f"  (stopped: no final answer after {max_steps} model calls)")
    except ToolACEError as error:
        print(f"  (not answered: {error})")
        return history, False
    print(f"  total {time.perf_counter() - started:.2f} s")
    return messages, True


def print_message(message: Any, seconds: float, out: TextIO | None = None) -> None:
    """Print an agent step: a model call (timing, tokens, calls, answer) or a tool result."""
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


def chat(agent: Any, window: ConversationWindow | None, max_steps: int) -> int:
    """Read questions until ``exit``/``quit``, end of input or Ctrl-C at the prompt.

    Turns that ``window`` left out of a prompt are forgotten for good.
    """
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
        if not question:
            continue
        if window is not None:
            window.dropped = 0
        try:
            history, _ = run_turn(agent, history, question, max_steps)
        except KeyboardInterrupt:
            print("\n  (interrupted; that question is dropped)")
        if window is not None:
            history = history[window.dropped :]


class ProgressLine:
    """Training progress on one terminal line (or every tenth on a non-terminal)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.perf_counter()

    def __call__(self, step: int, total: int, loss: float) -> None:
        """Show step ``step`` of ``total`` and its loss."""
        tty = self.out.isatty()
        if not tty and step % max(1, total // 10) and step != total:
            return
        elapsed = time.perf_counter() - self.started
        line = f"  step {step}/{total}  loss {loss:.3f}  {elapsed:.0f} s"
        print(f"\r{line}" if tty else line, end="" if tty and step < total else "\n",
              file=self.out, flush=True)  # fmt: skip
