"""LangChain's standard unit-test suite for ChatToolACE, on the tiny offline checkpoint."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from toolace_integrations.langchain import ChatToolACE


class TestChatToolACEStandard(ChatModelUnitTests):
    _model_path = ""

    @pytest.fixture(autouse=True)
    def _tiny_model(self, tiny_model_path: str) -> None:
        type(self)._model_path = tiny_model_path

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatToolACE

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": self._model_path}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"TOOLACE_API_KEY": "server-key"},
            {"model": self._model_path, "base_url": "http://127.0.0.1:8000/v1"},
            {"api_key": "server-key"},
        )

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True


def test_standard_suite_detects_capabilities() -> None:
    """The suite's own detection (not just our overrides) sees tool calling and tool_choice."""
    suite = ChatModelUnitTests.__new__(TestChatToolACEStandard)
    assert ChatModelUnitTests.has_tool_calling.fget(suite)  # type: ignore[attr-defined]
    assert ChatModelUnitTests.has_tool_choice.fget(suite)  # type: ignore[attr-defined]
    assert ChatModelUnitTests.has_structured_output.fget(suite)  # type: ignore[attr-defined]
