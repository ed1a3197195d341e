"""Where a forced answer ends early near ``max_tokens``: one decision for both backends.

When the answer must be calls (``tool_choice`` required or named, structured output) and the
grammar is on, a :class:`BudgetCloser` follows the answer token by token with a
:class:`~toolace_integrations.format.closing.Closer`. After each token, once the tokens left are
no more than a margin (what the answer needs, at least, to get from one honest end to the next)
and the answer is at or just past such an end, it ends the answer there: the model's text up to
that point plus ``)]`` or ``]``, ``finish_reason="length"`` and ``closed_early``. The local engine
asks it after every token it generates; the remote backend feeds it the server's tokens
(:meth:`BudgetCloser.replay`) and cuts the answer where the engine would have, so greedy answers
come out the same on both.

Notes:
    Pure: it needs a tokenizer's ``encode``/``decode``, no torch. An answer that reaches no
    honest end within its budget is a truncated answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from toolace_integrations.core.encoding import text_encoder
from toolace_integrations.core.generation import GenerationRequest
from toolace_integrations.format.closing import Closer
from toolace_integrations.format.grammar_text import call_arguments
from toolace_integrations.format.schema import to_json_schema
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

__all__ = ["BudgetCloser", "budget_closer", "forced"]


def forced(choice: ToolChoice | None) -> bool:
    """Whether ``choice`` (as the grammar enforces it) admits only calls."""
    return choice is not None and choice.mode in ("required", "named")


def budget_closer(tokenizer: Any, request: GenerationRequest) -> BudgetCloser | None:
    """The closer of ``request``'s answer, or ``None`` when no grammar forces it to be calls."""
    choice = request.grammar_choice
    if choice is None or not forced(choice):
        return None
    return BudgetCloser(tokenizer, request.tools, choice)


class BudgetCloser:
    """One forced answer followed token by token; it says when and how to end it early.

    Attributes:
        fed: How many of the answer's tokens were read.
        answer: The closed answer once :meth:`should_end` said to end (``None`` before).
    """

    def __init__(self, tokenizer: Any, tools: Sequence[FunctionSpec], choice: ToolChoice) -> None:
        self.tokenizer = tokenizer
        self.closer = Closer(tools, choice)
        self.margin = _margin(tokenizer, tools, choice)
        self.fed = 0
        self.answer: str | None = None
        self._text = ""
        self._pending: list[int] = []

    @property
    def closed_early(self) -> bool:
        """Whether the answer was ended early (and so is :attr:`answer`, a complete call list)."""
        return self.answer is not None

    def feed(self, token: int) -> None:
        """Read the answer's next token."""
        self.fed += 1
        self._pending.append(token)
        text: str = self.tokenizer.decode(self._pending, skip_special_tokens=True)
        if not text.endswith("\ufffd"):
            self.closer.feed(text)
            self._text += text
            self._pending = []

    def should_end(self, remaining: int) -> bool:
        """Whether to end the answer now, with ``remaining`` tokens left; sets :attr:`answer`.

        True once ``remaining`` is within the margin and the answer read so far may end
        honestly (see :meth:`~toolace_integrations.format.closing.Closer.ending`) but is not
        complete yet.
        """
        if self.answer is not None:
            return True
        ending = None if self._pending or remaining > self.margin else self.closer.ending()
        if ending is None or ending == (len(self._text), ""):
            return False
        at, closing = ending
        self.answer = self._text[:at] + closing
        return True

    def replay(self, tokens: Sequence[int], budget: int) -> int | None:
        """Follow ``tokens`` as the engine would generate them within ``budget``.

        Feeds the tokens not yet read, asking after each whether the engine would end the
        answer there; returns how many tokens the engine would have generated when it would
        (:attr:`answer` is then the answer), else ``None``. Call it again with the longer list
        as tokens arrive: it goes on where it stopped.
        """
        while self.answer is None and self.fed < len(tokens):
            self.feed(tokens[self.fed])
            if self.should_end(budget - self.fed):
                return self.fed
        return self.fed if self.answer is not None else None


def _step_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids of ``text`` (a step of a call, sized for the margin), encoded alone."""
    return text_encoder(tokenizer).content_ids(text)


def _margin(tokenizer: Any, tools: Sequence[FunctionSpec], choice: ToolChoice) -> int:
    """Tokens an answer needs, at least, to get from one honest end to the next, with slack.

    From such an end the answer can only go on with an optional argument (``, key=""``) or,
    with parallel calls, another call with its required arguments; the margin is the longest of
    those shortest steps plus a few tokens for a value and separators.
    """
    steps: list[str] = []
    for tool in tools:
        if choice.mode == "named" and tool.name != choice.name:
            continue
        arguments = call_arguments(to_json_schema(tool.parameters))
        steps += [f', {name}=""' for name, _, required in arguments if not required]
        if choice.parallel:
            values = ", ".join(f'{name}=""' for name, _, required in arguments if required)
            steps.append(f", {tool.name}({values})")
    return max((len(_step_ids(tokenizer, step)) for step in steps), default=0) + 4
