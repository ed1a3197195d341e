"""Keeping a chat inside the model's context window: the oldest turns go first.

A chat's history grows by every question, call, tool result and answer until the prompt no longer
fits. :class:`ConversationWindow` is agent middleware that, before each model call, counts the
prompt with the model's own tokenizer (``get_num_tokens_from_messages``, tools included) and drops
whole turns from the start (a turn is a user message and everything up to the next) until the
prompt leaves room for an answer. A turn that does not fit even alone raises
:class:`TurnTooLongError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage

from toolace_integrations.errors import ToolACEError


class TurnTooLongError(ToolACEError, ValueError):
    """The current turn alone leaves no room for an answer in the context window.

    Attributes:
        prompt_tokens: The prompt's tokens with only this turn (and the tools).
        limit: The most prompt tokens that leave room for an answer.
    """

    def __init__(self, prompt_tokens: int, limit: int, window: int, answer_tokens: int) -> None:
        self.prompt_tokens, self.limit = prompt_tokens, limit
        super().__init__(
            f"this turn is too long for the model: {prompt_tokens} prompt tokens with the tools, "
            f"but its {window}-token window holds at most {limit}, leaving {answer_tokens} for "
            "the answer. Ask something shorter, or lower --max-new-tokens."
        )


class ConversationWindow(AgentMiddleware):
    """Agent middleware that drops the oldest turns so each model call fits the window.

    The agent's state keeps every message; only what the model is sent is cut. :attr:`dropped`
    says how many leading messages of the conversation the last call left out, so a chat can
    forget them for good.

    Args:
        count: Prompt tokens of messages with tools (the chat model's
            ``get_num_tokens_from_messages``).
        window: The model's context window in tokens.
        answer_tokens: Room kept for the answer (the model's ``max_new_tokens``).
        notify: Told, in one line, each time more turns are dropped.
    """

    def __init__(
        self,
        count: Callable[[list[BaseMessage], Sequence[Any]], int],
        window: int,
        answer_tokens: int,
        notify: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.count, self.window, self.answer_tokens = count, window, answer_tokens
        self.notify = notify
        self.dropped = 0

    @property
    def limit(self) -> int:
        """The most prompt tokens that leave room for a whole answer."""
        return self.window - self.answer_tokens

    def fit(
        self, messages: list[AnyMessage], tools: Sequence[Any], pinned: Sequence[AnyMessage] = ()
    ) -> list[AnyMessage]:
        """The latest whole turns of ``messages`` whose prompt fits :attr:`limit`.

        ``pinned`` messages (a system message) are always sent, before them, and counted.

        Raises:
            TurnTooLongError: the last turn alone does not fit.
        """
        starts = [i for i, message in enumerate(messages) if isinstance(message, HumanMessage)]
        tokens = 0
        for start in starts or [0]:
            kept = messages[start:]
            tokens = self.count([*pinned, *kept], tools)
            if tokens <= self.limit:
                if start > self.dropped:
                    turns = sum(1 for s in starts if self.dropped <= s < start)
                    oldest = "the oldest turn" if turns < 2 else f"the oldest {turns} turns"
                    self.notify(
                        f"  (the conversation outgrew the model's {self.window}-token window: "
                        f"dropped {oldest})"
                    )
                    self.dropped = start
                return kept
        raise TurnTooLongError(tokens, self.limit, self.window, self.answer_tokens)

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any]:
        """Send the model only the turns that fit."""
        pinned = [request.system_message] if request.system_message is not None else []
        kept = self.fit(list(request.messages), request.tools, pinned)
        return handler(request.override(messages=kept))
