"""Prompt profiles: how each checkpoint of the pythonic family expects its prompt.

A :class:`PromptProfile` is one small immutable record per checkpoint family: the system prompt
and where the tool list goes in it, the tool-JSON dialect, the turn markers and end tokens, how
tool results come back, and the wrappers the model may write around a call list. Every profile
answers in the same pythonic call syntax, so the parser, grammar and streaming are shared.

:func:`detect_profile` picks one from the checkpoint's name and tokenizer; the ``prompt_format``
setting of both adapters overrides it. Each profile's docstring names the source its text follows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from toolace_integrations.format.tool_json import (
    bfcl_tools,
    llama4_tools,
    meta_tools,
    toolace_tools,
)
from toolace_integrations.format.tools import FunctionSpec

PromptFormat = Literal["auto", "toolace", "bfcl", "llama3.2", "llama4"]
"""The values of the ``prompt_format`` setting: ``auto`` detects the profile."""

_LLAMA3_TURNS = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")
_LLAMA4_TURNS = ("<|header_start|>", "<|header_end|>", "<|eot|>")


@dataclass(frozen=True)
class PromptProfile:
    """How one checkpoint family is prompted (see the module docstring).

    Attributes:
        name: The ``prompt_format`` value that selects it.
        source: Where its text comes from.
        system_template: The system prompt; ``{functions}`` is replaced by the tool list.
        tools_json: Writes the tool list (a dialect of
            :mod:`~toolace_integrations.format.tool_json`).
        turns: The header start, header end and end-of-turn tokens.
        end_tokens: Every token that ends an answer.
        grouped_results: Consecutive tool results go back as one ``ipython`` turn holding
            ``[{"name": ..., "results": ...}]`` (ToolACE); otherwise one ``ipython`` turn per
            result, its content as the tool returned it.
        call_prefix: Control-token text before a past call list replayed in the history.
        call_wrappers: Opening and closing text the model may write around a call list.
        strip_tool_prompt: Strip the filled system prompt before the conversation's own system
            text is joined to it (BFCL joins it unstripped).
    """

    name: str
    source: str
    system_template: str
    tools_json: Callable[[Sequence[FunctionSpec]], str]
    turns: tuple[str, str, str] = _LLAMA3_TURNS
    end_tokens: tuple[str, ...] = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
    grouped_results: bool = False
    call_prefix: str = ""
    call_wrappers: tuple[tuple[str, str], ...] = ()
    strip_tool_prompt: bool = False

    def system_prompt(self, tools: Sequence[FunctionSpec], template: str | None = None) -> str:
        """The system prompt with the tool list filled in (``template``: a custom prompt)."""
        return (template or self.system_template).replace("{functions}", self.tools_json(tools))

    @property
    def chat_template(self) -> str:
        """The token layout as a chat template: headers, stripped contents, end-of-turn tokens.

        No date lines and no content transformed (BFCL's ``LlamaHandler._format_prompt``); an
        assistant turn replaying calls starts with its ``prefix`` key (:attr:`call_prefix`).
        """
        start, end, eot = self.turns
        return (
            "{% for message in messages %}"
            f"{{% set content = '{start}' + message['role'] + '{end}\\n\\n'"
            f" + message.get('prefix', '') + message['content'] | trim + '{eot}' %}}"
            "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
            "{{ content }}{% endfor %}"
            f"{{% if add_generation_prompt %}}{{{{ '{start}assistant{end}\\n\\n' }}}}{{% endif %}}"
        )


TOOLACE = PromptProfile(
    name="toolace",
    source="Team-ACE/ToolACE-8B model card (system prompt) and training data (compact tool "
    "JSON, grouped results); layout of BFCL's LlamaHandler, which scored it on BFCL v3",
    system_template=(
        "You are an expert in composing functions. You are given a question and a set of possible "
        "functions. \nBased on the question, you will need to make one or more function/tool "
        "calls to achieve the purpose. \nIf none of the function can be used, point it out. If "
        "the given question lacks the parameters required by the function,\nalso point it out. "
        "You should only return the function call in tools call sections.\nIf you decide to "
        "invoke any of the function(s), you MUST put it in the format of [func_name1(params_name1"
        "=params_value1, params_name2=params_value2...), func_name2(params)]\n\nYou SHOULD NOT "
        "include any other text in the response.\nHere is a list of functions in JSON format "
        "that you can invoke.\n{functions}\n\n"
    ),
    tools_json=toolace_tools,
    grouped_results=True,
    strip_tool_prompt=True,
)
"""ToolACE-8B (the default): the model card's prompt, tools as in its training data."""

BFCL = PromptProfile(
    name="bfcl",
    source="BFCL v4 (bfcl-eval 2026.3.23): formulate_system_prompt with the default format "
    "(python calls, json docs, plaintext, classic) and LlamaHandler._format_prompt",
    system_template=(
        "You are an expert in composing functions.You are given a question and a set of possible "
        "functions. Based on the question, you will need to make one or more function/tool calls "
        "to achieve the purpose. If none of the functions can be used, point it out. If the "
        "given question lacks the parameters required by the function, also point it out.\n\n"
        "You should only return the function calls in your response.\n\nIf you decide to invoke "
        "any of the function(s), you MUST put it in the format of [func_name1(params_name1="
        "params_value1, params_name2=params_value2...), func_name2(params)].  You SHOULD NOT "
        "include any other text in the response.\n\nAt each turn, you should try your best to "
        "complete the tasks requested by the user within the current turn. Continue to output "
        "functions to call until you have fulfilled the user's request to the best of your "
        "ability. Once you have no more functions to call, the system will consider the current "
        "turn complete and proceed to the next turn or task.\n\nHere is a list of functions in "
        "json format that you can invoke.\n{functions}\n"
    ),
    tools_json=bfcl_tools,
)
"""ToolACE-2-8B, watt-tool-8B/70B, Llama-3.1/3.3 in prompt mode: as BFCL v4 scores them."""

LLAMA_3_2 = PromptProfile(
    name="llama3.2",
    source="Meta's Llama-3.2 text prompt format, 'Zero shot function calling' and its E2E "
    "example (meta-llama/llama-models models/llama3_2/text_prompt_format.md)",
    system_template=(
        "You are an expert in composing functions. You are given a question and a set of possible "
        "functions.\nBased on the question, you will need to make one or more function/tool calls "
        "to achieve the purpose.\nIf none of the function can be used, point it out. If the given "
        "question lacks the parameters required by the function,\nalso point it out. You should "
        "only return the function call in tools call sections.\n\nIf you decide to invoke any of "
        "the function(s), you MUST put it in the format of [func_name1(params_name1=params_value1,"
        " params_name2=params_value2...), func_name2(params)]\nYou SHOULD NOT include any other "
        "text in the response.\n\nHere is a list of functions in JSON format that you can invoke."
        "\n\n{functions}"
    ),
    tools_json=meta_tools,
    call_prefix="<|python_tag|>",
    call_wrappers=(("<|python_tag|>", ""),),
)
"""Llama-3.2-1B/3B-Instruct: Meta's documented zero-shot function-calling prompt."""

LLAMA_4 = PromptProfile(
    name="llama4",
    source="Meta's Llama-4 prompt format, 'Zero shot function calling - system message' "
    "(meta-llama/llama-models models/llama4/prompt_format.md); turns as BFCL's LlamaHandler",
    system_template=(
        "You are a helpful assistant and an expert in function composition. You can answer "
        "general questions using your internal knowledge OR invoke functions when necessary. "
        "Follow these strict guidelines:\n\n1. FUNCTION CALLS:\n- ONLY use functions that are "
        "EXPLICITLY listed in the function list below\n- If NO functions are listed (empty "
        "function list []), respond ONLY with internal knowledge or \"I don't have access to "
        '[Unavailable service] information"\n- If a function is not in the list, respond ONLY '
        'with internal knowledge or "I don\'t have access to [Unavailable service] information"'
        "\n- If ALL required parameters are present AND the query EXACTLY matches a listed "
        "function's purpose: output ONLY the function call(s)\n- Use exact format: [func_name1("
        "param1=value1, param2=value2), func_name2(...)]\nExamples:\nCORRECT: [get_weather("
        'location="Vancouver"), calculate_route(start="Boston", end="New York")] <- Only if '
        "get_weather and calculate_route are in function list\nINCORRECT: get_weather(location="
        '"New York")\nINCORRECT: Let me check the weather: [get_weather(location="New York")]'
        '\nINCORRECT: [get_events(location="Singapore")] <- If function not in list\n\n2. '
        "RESPONSE RULES:\n- For pure function requests matching a listed function: ONLY output "
        "the function call(s)\n- For knowledge questions: ONLY output text\n- For missing "
        "parameters: ONLY request the specific missing parameters\n- For unavailable services "
        "(not in function list): output ONLY with internal knowledge or \"I don't have access to "
        '[Unavailable service] information". Do NOT execute a function call.\n- If the query '
        "asks for information beyond what a listed function provides: output ONLY with internal "
        "knowledge about your limitations\n- NEVER combine text and function calls in the same "
        "response\n- NEVER suggest alternative functions when the requested service is "
        "unavailable\n- NEVER create or invent new functions not listed below\n\n3. STRICT "
        "BOUNDARIES:\n- ONLY use functions from the list below - no exceptions\n- NEVER use a "
        "function as an alternative to unavailable information\n- NEVER call functions not "
        "present in the function list\n- NEVER add explanatory text to function calls\n- NEVER "
        "respond with empty brackets\n- Use proper Python/JSON syntax for function calls\n- Check "
        "the function list carefully before responding\n\n4. TOOL RESPONSE HANDLING:\n- When "
        "receiving tool responses: provide concise, natural language responses\n- Don't repeat "
        "tool response verbatim\n- Don't add supplementary information\n\n\nHere is a list of "
        "functions in JSON format that you can invoke.\n\n{functions}\n\nYou can answer general "
        "questions or invoke tools when necessary.\nIn addition to tool calls, you should also "
        "augment your responses by using the tool outputs."
    ),
    tools_json=llama4_tools,
    turns=_LLAMA4_TURNS,
    end_tokens=("<|eot|>", "<|eom|>", "<|end_of_text|>"),
    call_wrappers=(("<|python_start|>", "<|python_end|>"),),
)
"""Llama-4 Scout/Maverick: Meta's documented zero-shot function-calling system message."""

PROMPT_PROFILES = {profile.name: profile for profile in (TOOLACE, BFCL, LLAMA_3_2, LLAMA_4)}
"""Every profile by its ``prompt_format`` name."""

END_TOKENS = tuple(dict.fromkeys(t for p in PROMPT_PROFILES.values() for t in p.end_tokens))
"""Every profile's end tokens: a checkpoint's tokenizer knows those of its family."""

# Checkpoint names (lowercase, without "-", "_", "." or spaces) and their profiles, first match.
_BY_NAME = (
    ("toolace2", BFCL),
    ("watttool", BFCL),
    ("toolace", TOOLACE),
    ("llama4", LLAMA_4),
    ("llama32", LLAMA_3_2),
    ("llama31", BFCL),
    ("llama33", BFCL),
)


def named_profile(names: Iterable[str]) -> PromptProfile | None:
    """The profile the first telling name in ``names`` (Hub ids, folders, served names) spells.

    ``ToolACE-2-8B``, ``watt-tool``, ``Llama-4``, ``Llama-3.2`` ...; ``None`` when none does.
    """
    for name in names:
        squeezed = re.sub(r"[-_. ]", "", name.lower())
        found = next((profile for key, profile in _BY_NAME if key in squeezed), None)
        if found is not None:
            return found
    return None


def detect_profile(names: Iterable[str], special_tokens: Collection[str] = ()) -> PromptProfile:
    """The profile of a checkpoint known by ``names``, whose tokenizer has ``special_tokens``.

    A name that spells a known family decides (:func:`named_profile`); else a tokenizer with
    Llama-4's ``<|header_start|>`` is Llama-4; else the ToolACE-8B profile, the default for
    unknown Llama-3 checkpoints.
    """
    found = named_profile(names)
    if found is not None:
        return found
    return LLAMA_4 if LLAMA_4.turns[0] in special_tokens else TOOLACE
