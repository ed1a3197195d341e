"""Each prompt profile renders exactly the layout its source documents.

References: BFCL's own prompt code (run here on BFCL's data), and Meta's documented prompts for
Llama-3.2 and Llama-4, copied below from ``meta-llama/llama-models``
(``models/llama3_2/text_prompt_format.md``, "Zero shot function calling E2E format";
``models/llama4/prompt_format.md``, "Zero shot function calling - system message").
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from bfcl_data import package_dir
from toolace_integrations import testing
from toolace_integrations.core.encoding import PromptEncoder
from toolace_integrations.format.parsing import ToolCall
from toolace_integrations.format.profiles import (
    BFCL,
    LLAMA_3_2,
    LLAMA_4,
    PROMPT_PROFILES,
    TOOLACE,
    PromptProfile,
    detect_profile,
)
from toolace_integrations.format.prompt import Message, render_messages
from toolace_integrations.format.tools import normalize_tools

GET_WEATHER = {
    "name": "get_weather",
    "description": "Get weather info for places",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {
                "type": "string",
                "description": "The name of the city to get the weather for",
            },
            "metric": {
                "type": "string",
                "description": "The metric for weather. Options are: celsius, fahrenheit",
                "default": "celsius",
            },
        },
        "required": ["city"],
    },
}

META_TOOLS = """[
    {
        "name": "get_weather",
        "description": "Get weather info for places",
        "parameters": {
            "type": "dict",
            "required": [
                "city"
            ],
            "properties": {
                "city": {
                    "type": "string",
                    "description": "The name of the city to get the weather for"
                },
                "metric": {
                    "type": "string",
                    "description": "The metric for weather. Options are: celsius, fahrenheit",
                    "default": "celsius"
                }
            }
        }
    }
]"""

LLAMA_3_2_E2E = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "You are an expert in composing functions. You are given a question and a set of possible "
    "functions.\nBased on the question, you will need to make one or more function/tool calls to "
    "achieve the purpose.\nIf none of the function can be used, point it out. If the given "
    "question lacks the parameters required by the function,\nalso point it out. You should only "
    "return the function call in tools call sections.\n\nIf you decide to invoke any of the "
    "function(s), you MUST put it in the format of [func_name1(params_name1=params_value1, "
    "params_name2=params_value2...), func_name2(params)]\nYou SHOULD NOT include any other text "
    "in the response.\n\nHere is a list of functions in JSON format that you can invoke.\n\n"
    + META_TOOLS
    + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is the weather in SF?"
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n<|python_tag|>[get_weather("
    'city="San Francisco", metric="celsius")]<|eot_id|><|start_header_id|>ipython'
    '<|end_header_id|>\n\n"25 C"<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n'
)
"""Meta's Llama-3.2 "Zero shot function calling E2E format" input prompt, verbatim."""

LLAMA_4_SYSTEM_MESSAGE_EXAMPLE = (
    "<|begin_of_text|><|header_start|>system<|header_end|>\n\n"
    + LLAMA_4.system_template.replace(
        "{functions}", META_TOOLS.replace('[\n                "city"\n            ]', '["city"]')
    )
    + "<|eot|><|header_start|>user<|header_end|>\n\nWhat is the weather in SF and Seattle?<|eot|>"
)
"""Meta's Llama-4 "Zero shot function calling - system message" prompt up to the user turn."""

LLAMA_4_CALL_AND_RESULT = (
    "<|header_start|>assistant<|header_end|>\n\n"
    '[get_weather(city="San Francisco"), get_weather(city="Seattle")]<|eot|>'
    '<|header_start|>ipython<|header_end|>\n\n"25 C"<|eot|>'
    '<|header_start|>ipython<|header_end|>\n\n"12 C"<|eot|>'
    "<|header_start|>assistant<|header_end|>\n\n"
)
"""The rest, as Meta's Llama-4 ``ChatFormat.encode_message`` writes it: calls as python_list
text, each tool result its own ``ipython`` turn, ``<|eot|>`` after each."""


@pytest.fixture(scope="module")
def llama3() -> PromptEncoder:
    return PromptEncoder(testing.llama3_tokenizer())


@pytest.fixture(scope="module")
def llama4(tmp_path_factory: pytest.TempPathFactory) -> PromptEncoder:
    from transformers import AutoTokenizer

    folder = testing.make_tiny_toolace(tmp_path_factory.mktemp("llama4"), tokenizer="llama4")
    return PromptEncoder(AutoTokenizer.from_pretrained(folder))


def _call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(name, arguments, id=f"call-{len(arguments)}-{arguments.get('city')}")


def test_llama_3_2_profile_is_metas_documented_prompt(llama3: PromptEncoder) -> None:
    call = _call("get_weather", city="San Francisco", metric="celsius")
    conversation = [
        Message("user", "What is the weather in SF?"),
        Message("assistant", tool_calls=(call,)),
        Message("tool", '"25 C"', tool_call_id=call.id),
    ]
    rendered = render_messages(conversation, normalize_tools([GET_WEATHER]), profile=LLAMA_3_2)
    assert llama3.prompt_text(rendered, LLAMA_3_2) == LLAMA_3_2_E2E


def test_llama_4_profile_is_metas_documented_prompt(llama4: PromptEncoder) -> None:
    calls = (_call("get_weather", city="San Francisco"), _call("get_weather", city="Seattle"))
    conversation = [
        Message("user", "What is the weather in SF and Seattle?"),
        Message("assistant", tool_calls=calls),
        Message("tool", '"25 C"', tool_call_id=calls[0].id),
        Message("tool", '"12 C"', tool_call_id=calls[1].id),
    ]
    rendered = render_messages(conversation, normalize_tools([GET_WEATHER]), profile=LLAMA_4)
    expected = LLAMA_4_SYSTEM_MESSAGE_EXAMPLE + LLAMA_4_CALL_AND_RESULT
    assert llama4.prompt_text(rendered, LLAMA_4) == expected


def test_toolace_profile_is_the_card_prompt_with_training_data_tools(
    llama3: PromptEncoder,
) -> None:
    call = _call("get_weather", city="Paris")
    conversation = [
        Message("system", "Answer briefly."),
        Message("user", "Weather in Paris?"),
        Message("assistant", tool_calls=(call,)),
        Message("tool", '{"temperature": 21}', tool_call_id=call.id),
    ]
    rendered = render_messages(conversation, normalize_tools([GET_WEATHER]), profile=TOOLACE)
    tools = (
        '[{"name": "get_weather", "description": "Get weather info for places", "parameters": '
        '{"type": "dict", "properties": {"city": {"type": "string", "description": "The name of '
        'the city to get the weather for"}, "metric": {"type": "string", "description": "The '
        'metric for weather. Options are: celsius, fahrenheit", "default": "celsius"}}, '
        '"required": ["city"]}}]'
    )
    assert llama3.prompt_text(rendered, TOOLACE) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "You are an expert in composing functions. You are given a question and a set of "
        "possible functions. \nBased on the question, you will need to make one or more "
        "function/tool calls to achieve the purpose. \nIf none of the function can be used, "
        "point it out. If the given question lacks the parameters required by the function,\n"
        "also point it out. You should only return the function call in tools call sections.\n"
        "If you decide to invoke any of the function(s), you MUST put it in the format of "
        "[func_name1(params_name1=params_value1, params_name2=params_value2...), "
        "func_name2(params)]\n\nYou SHOULD NOT include any other text in the response.\n"
        "Here is a list of functions in JSON format that you can invoke.\n"
        + tools
        + "\n\nAnswer briefly.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
        "Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        '[get_weather(city="Paris")]<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n'
        '[{"name": "get_weather", "results": {"temperature": 21}}]<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


@pytest.fixture(scope="module")
def bfcl_prompt() -> Any:
    """BFCL's own prompt code: its system prompt step and ``LlamaHandler._format_prompt``.

    The handler module imports every vendor SDK, so its ``_format_prompt`` is compiled alone
    from BFCL's source; the prompt utilities import with the Java/JS parsers stubbed.
    """
    pytest.importorskip("bfcl_eval")
    stubs = {
        "bfcl_eval.constants.model_config": {"MODEL_CONFIG_MAPPING": {}},
        "bfcl_eval.model_handler.parser.java_parser": {"parse_java_function_call": None},
        "bfcl_eval.model_handler.parser.js_parser": {"parse_javascript_function_call": None},
    }
    saved = {name: sys.modules.get(name) for name in stubs}
    for name, attributes in stubs.items():
        sys.modules[name] = types.ModuleType(name)
        vars(sys.modules[name]).update(attributes)
    try:
        from bfcl_eval.model_handler.utils import system_prompt_pre_processing_chat_model
        from bfcl_eval.utils import _func_doc_language_specific_pre_processing
    finally:
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
    source = Path(sys.modules["bfcl_eval"].__file__ or "").parent
    tree = ast.parse((source / "model_handler/local_inference/llama.py").read_text())
    [method] = [n for n in ast.walk(tree) if getattr(n, "name", "") == "_format_prompt"]
    assert isinstance(method, ast.FunctionDef)
    method.decorator_list = []
    namespace: dict[str, Any] = {}
    exec(compile(ast.Module([method], []), "llama.py", "exec"), namespace)  # BFCL's code
    return (
        system_prompt_pre_processing_chat_model,
        _func_doc_language_specific_pre_processing,
        (namespace["_format_prompt"]),
    )


RESULTS = ('{"temperature": 21, "unit": "celsius"}', "Done. \n")


def _bfcl_entries() -> list[dict[str, Any]]:
    """Entries with one question turn; the live ones include some with their own system turn."""
    entries = []
    for category in ("simple_python", "multiple", "parallel_multiple", "live_multiple"):
        path = package_dir() / "data" / f"BFCL_v4_{category}.json"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        single = [e for e in lines if len(e["question"]) == 1]
        entries += single[:: max(1, len(lines) // 40)]
        entries += [e for e in single if e["question"][0][0]["role"] == "system"][:10]
    return entries


@pytest.mark.parametrize("family", ["Llama-3", "Llama-4"])
def test_bfcl_profile_renders_what_bfcl_sends(
    bfcl_prompt: Any, llama3: PromptEncoder, llama4: PromptEncoder, family: str
) -> None:
    """Byte for byte BFCL's prompt (ToolACE-2-8B, watt-tool), and the Llama-4 turns BFCL writes.

    Each question goes on with two past calls of its first tool and their results, as BFCL's
    handler appends them (``_add_assistant_message_prompting``: the answer as written;
    ``_add_execution_results_prompting``: one ``ipython`` turn per result).
    """
    add_system_prompt, add_language_hint, format_prompt = bfcl_prompt
    profile, encoder = (BFCL, llama3)
    if family == "Llama-4":  # BFCL's prompt in the Llama-4 profile's turns
        profile, encoder = dataclasses.replace(BFCL, turns=LLAMA_4.turns), llama4
    entries = _bfcl_entries()
    assert any(e["question"][0][0]["role"] == "system" for e in entries)
    for entry in entries:
        functions = add_language_hint(copy.deepcopy(entry["function"]), "simple_python")
        theirs_messages = add_system_prompt(
            copy.deepcopy(entry["question"][0]), functions, entry["id"]
        )
        name = functions[0]["name"]
        theirs_messages += [
            {"role": "assistant", "content": f"[{name}(), {name}()]"},
            *({"role": "ipython", "content": result} for result in RESULTS),
        ]
        handler = types.SimpleNamespace(model_name=f"meta-llama/{family}-scored")
        theirs = format_prompt(handler, theirs_messages, functions)
        calls = (ToolCall(name, {}, id="call-1"), ToolCall(name, {}, id="call-2"))
        ours = [Message(m["role"], m["content"]) for m in entry["question"][0]]
        ours += [
            Message("assistant", tool_calls=calls),
            *(Message("tool", r, tool_call_id=c.id) for r, c in zip(RESULTS, calls, strict=True)),
        ]
        rendered = render_messages(ours, normalize_tools(functions), profile=profile)
        assert encoder.prompt_text(rendered, profile) == theirs, entry["id"]


LLAMA_3_PROFILES = [p for p in PROMPT_PROFILES.values() if p is not LLAMA_4]


@pytest.mark.parametrize("profile", LLAMA_3_PROFILES, ids=lambda p: p.name)
def test_piecewise_ids_equal_whole_text_tokenization(
    profile: PromptProfile, llama3: PromptEncoder
) -> None:
    """On the real Llama-3.1 tokenizer, content and layout encoded apart give the ids of the
    whole prompt text (Llama-4's vocabulary is not available offline to show the same)."""
    encoder = llama3
    call = _call("get_weather", city="Zürich")
    conversation = [
        Message("system", "Be brief."),
        Message("user", "Weather in Zürich and in Oslo? Answer in °C."),
        Message("assistant", tool_calls=(call,)),
        Message("tool", '{"temperature": -3, "sky": "clear"}', tool_call_id=call.id),
        Message("user", "And tomorrow?"),
    ]
    rendered = render_messages(conversation, normalize_tools([GET_WEATHER]), profile=profile)
    text = encoder.prompt_text(rendered, profile)
    assert encoder.encode(rendered, profile) == encoder.text.template_ids(text)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["Team-ACE/ToolACE-8B"], TOOLACE),
        (["Team-ACE/ToolACE-2-8B"], BFCL),
        (["/models/hub/models--Team-ACE--ToolACE-2-8B/snapshots/abc"], BFCL),
        (["watt-ai/watt-tool-8B"], BFCL),
        (["meta-llama/Llama-3.1-8B-Instruct"], BFCL),
        (["meta-llama/Llama-3.3-70B-Instruct"], BFCL),
        (["meta-llama/Llama-3.2-3B-Instruct"], LLAMA_3_2),
        (["meta-llama/Llama-4-Scout-17B-16E-Instruct"], LLAMA_4),
        (["served-name", "/srv/llama_4_maverick"], LLAMA_4),
        (["/srv/Llama-3.2-3B-Instruct", "toolace"], LLAMA_3_2),  # the served folder comes first
        (["/data/my-finetune"], TOOLACE),
    ],
)
def test_profile_is_detected_from_the_checkpoint_name(
    names: list[str], expected: PromptProfile
) -> None:
    assert detect_profile(names) is expected


def test_an_unnamed_checkpoint_with_llama_4_tokens_is_llama_4(llama4: PromptEncoder) -> None:
    assert detect_profile(["/data/my-finetune"], llama4.special_tokens) is LLAMA_4
    assert detect_profile(["/data/my-finetune"], {"<|start_header_id|>"}) is TOOLACE
