"""Forcing an agent's decisions through LangChain's own per-step hook, for random-weight models.

A random-weight model never decides by itself to call a tool or to stop, so agent tests set
``tool_choice`` per model call: "any" until a tool has answered in this user turn, then "none",
one call at a time. The grammar makes the forced call valid, so the tool runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import HumanMessage, ToolMessage


def forced_choice(messages: list[Any]) -> str:
    """``"any"`` until a tool result follows the last user message, then ``"none"``."""
    last_user = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    answered = any(isinstance(m, ToolMessage) for m in messages[last_user:])
    return "none" if answered else "any"


class CallToolThenAnswer(AgentMiddleware):
    """Per model call: force one round of tool calls per user turn, then a text answer."""

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        return handler(self._forced(request))

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse:
        return await handler(self._forced(request))

    @staticmethod
    def _forced(request: ModelRequest) -> ModelRequest:
        settings = {**request.model_settings, "parallel_tool_calls": False}
        return request.override(
            tool_choice=forced_choice(request.messages), model_settings=settings
        )
