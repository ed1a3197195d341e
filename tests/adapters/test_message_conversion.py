"""Issue 26.8: what the user sent reaches the prompt as sent, in both adapters.

Two text blocks of a tool result stay apart (a newline between, not "part Apart B"), and a
system message in the middle of a conversation stays there as a system turn of its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock

from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM

CALL = {"name": "get_time", "args": {"city": "Paris"}, "id": "c1"}


def _langchain_prompt(path: str) -> tuple[str, Any]:
    llm = ChatToolACE(model=path)
    conversation = [
        SystemMessage("Be brief."),
        HumanMessage("Time in Paris?"),
        AIMessage("", tool_calls=[CALL]),
        ToolMessage([{"type": "text", "text": "part A"}, "part B"], tool_call_id="c1"),
        SystemMessage("Now answer in French."),
        HumanMessage([{"type": "text", "text": "And"}, {"type": "text", "text": "Rome?"}]),
    ]
    return llm.get_prompt_text(conversation), (llm, conversation)


def _llama_index_prompt(path: str) -> tuple[str, Any]:
    llm = ToolACELLM(model=path)
    conversation = [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.USER, content="Time in Paris?"),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[ToolCallBlock(tool_call_id="c1", tool_name="get_time", tool_kwargs={})],
        ),
        ChatMessage(
            role=MessageRole.TOOL,
            blocks=[TextBlock(text="part A"), TextBlock(text="part B")],
            additional_kwargs={"tool_call_id": "c1"},
        ),
        ChatMessage(role=MessageRole.SYSTEM, content="Now answer in French."),
        ChatMessage(role=MessageRole.USER, blocks=[TextBlock(text="And"), TextBlock(text="Rome?")]),
    ]
    return llm.get_prompt_text(conversation), None


@pytest.mark.parametrize("prompt_of", [_langchain_prompt, _llama_index_prompt])
def test_text_blocks_and_a_late_system_message_are_kept(
    prompt_of: Any, tiny_model_path: str
) -> None:
    prompt, _ = prompt_of(tiny_model_path)
    headers = prompt.split("<|start_header_id|>")[1:]
    turns = [turn.split("<|end_header_id|>\n\n") for turn in headers]
    contents = [content.removesuffix("<|eot_id|>") for _, content in turns]
    assert contents[3] == '[{"name": "get_time", "results": "part A\\npart B"}]'
    roles = [role for role, _ in turns]
    assert roles == ["system", "user", "assistant", "ipython", "system", "user", "assistant"]
    assert contents[0] == "Be brief."  # the late system message is not moved up here
    assert contents[4] == "Now answer in French."
    assert contents[5] == "And\nRome?"


def test_a_late_system_turn_keeps_piecewise_encoding_exact(tiny_llama3_model_path: str) -> None:
    prompt, (llm, conversation) = _langchain_prompt(tiny_llama3_model_path)  # Meta's tokenizer
    whole = llm._encoder().text.template_ids(prompt)
    assert llm.get_num_tokens_from_messages(conversation) == len(whole)
