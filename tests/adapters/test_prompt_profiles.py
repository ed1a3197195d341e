"""Every prompt profile through both adapters, on a tiny random-weight checkpoint of its family.

The Llama-3.x profiles (``toolace``, ``bfcl``, ``llama3.2``) run on the real Llama-3.1 tokenizer,
Llama-4 on the toy tokenizer carrying Llama-4's special tokens, detected from that tokenizer. A
forced call (a tool whose arguments are enums, so any call the grammar allows is schema-valid)
comes back valid through LangChain and LlamaIndex, streamed and not; the prompt each adapter
reports is in the profile's layout, and a past call with its results replays in its shape.
Llama-4's real call wrapper tokens, steered token by token, pass the grammar and never show.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from reliability._hooks import DTYPE, steer
from shirt_tool import PICK, assert_valid_pick
from toolace_integrations.core.encoding import text_encoder
from toolace_integrations.format.profiles import (
    BFCL,
    LLAMA_3_2,
    LLAMA_4,
    PROMPT_PROFILES,
    TOOLACE,
    PromptProfile,
    named_profile,
)
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import ModelSpec, TransformersEngine, load_engine
from toolace_integrations.testing import make_tiny_toolace

CALL = '[pick(color="red", size="S")]'
PAST = [{"color": "red", "size": "S"}, {"color": "green", "size": "M"}]
RESULTS = ['{"stock": 3}', '{"stock": 0}']


@pytest.fixture(scope="module")
def llama4_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Llama-4-tokenizer checkpoint in a folder whose name names no family."""
    return make_tiny_toolace(Path(tmp_path_factory.mktemp("checkpoint")), tokenizer="llama4")


@pytest.fixture(scope="module", params=list(PROMPT_PROFILES), ids=list(PROMPT_PROFILES))
def profile(request: pytest.FixtureRequest) -> PromptProfile:
    found: PromptProfile = PROMPT_PROFILES[request.param]
    return found


@pytest.fixture(scope="module")
def settings(
    profile: PromptProfile, tiny_llama3_model_path: str, llama4_path: str
) -> dict[str, Any]:
    """The checkpoint of the profile's family; Llama-4's profile is detected, not named."""
    if profile is LLAMA_4:
        return {"model": llama4_path, "prompt_format": "auto", "dtype": DTYPE}
    return {"model": tiny_llama3_model_path, "prompt_format": profile.name, "dtype": DTYPE}


@pytest.fixture(scope="module")
def lc(settings: dict[str, Any]) -> ChatToolACE:
    return ChatToolACE(**settings, max_tokens=24)


@pytest.fixture(scope="module")
def li(settings: dict[str, Any]) -> ToolACELLM:
    return ToolACELLM(**settings, max_new_tokens=24)


def test_the_adapters_use_the_profile(
    lc: ChatToolACE, li: ToolACELLM, profile: PromptProfile, llama4_path: str
) -> None:
    assert lc.prompt_profile() is profile and li.prompt_profile() is profile
    assert named_profile([llama4_path]) is None  # Llama-4 is told by its tokenizer


def test_langchain_forced_call(lc: ChatToolACE) -> None:
    bound = lc.bind_tools([PICK], tool_choice="pick")
    invoked = bound.invoke("A red shirt in S, please.")
    assert isinstance(invoked, AIMessage) and invoked.tool_calls and not invoked.invalid_tool_calls
    for call in invoked.tool_calls:
        assert_valid_pick(call["name"], call["args"])
    chunks = list(bound.stream("A red shirt in S, please."))
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk) and not total.invalid_tool_calls
    streamed = [(c["name"], c["args"]) for c in total.tool_calls]
    assert streamed == [(c["name"], c["args"]) for c in invoked.tool_calls]  # greedy: the same
    assert any(chunk.tool_call_chunks for chunk in chunks[:-1])  # pieces came as written


def test_llama_index_forced_call(li: ToolACELLM) -> None:
    response = li.chat_with_tools([PICK], user_msg="A red shirt in S.", tool_choice="pick")
    selections = li.get_tool_calls_from_response(response)
    assert selections
    for selection in selections:
        assert_valid_pick(selection.tool_name, selection.tool_kwargs)
    responses = list(
        li.stream_chat_with_tools([PICK], user_msg="A red shirt in S.", tool_choice="pick")
    )
    streamed = li.get_tool_calls_from_response(responses[-1])
    assert [(s.tool_name, s.tool_kwargs) for s in streamed] == [
        (s.tool_name, s.tool_kwargs) for s in selections
    ]


def _heads(profile: PromptProfile) -> str:
    """The start of the profile's system prompt, which tells the profiles apart."""
    return profile.system_template[:120]


def _history_langchain() -> list[Any]:
    calls = [{"name": "pick", "args": args, "id": f"c{i}"} for i, args in enumerate(PAST)]
    return [
        HumanMessage("Two shirts, please."),
        AIMessage("", tool_calls=calls),
        *(ToolMessage(result, tool_call_id=f"c{i}") for i, result in enumerate(RESULTS)),
    ]


def _history_llama_index() -> list[ChatMessage]:
    calls = [
        {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": "pick", "arguments": json.dumps(args)},
        }
        for i, args in enumerate(PAST)
    ]
    return [
        ChatMessage(role=MessageRole.USER, content="Two shirts, please."),
        ChatMessage(role=MessageRole.ASSISTANT, additional_kwargs={"tool_calls": calls}),
        *(
            ChatMessage(
                role=MessageRole.TOOL, content=result, additional_kwargs={"tool_call_id": f"c{i}"}
            )
            for i, result in enumerate(RESULTS)
        ),
    ]


def _expected_history(profile: PromptProfile) -> str:
    """The past call and its results as the profile lays them out."""
    start, end, eot = profile.turns
    replay = '[pick(color="red", size="S"), pick(color="green", size="M")]'
    turn = f"{start}assistant{end}\n\n{profile.call_prefix}{replay}{eot}"
    if profile.grouped_results:
        grouped = json.dumps([{"name": "pick", "results": json.loads(r)} for r in RESULTS])
        return turn + f"{start}ipython{end}\n\n{grouped}{eot}"
    return turn + "".join(f"{start}ipython{end}\n\n{result}{eot}" for result in RESULTS)


def test_the_reported_prompt_is_in_the_profile_layout(
    lc: ChatToolACE, li: ToolACELLM, profile: PromptProfile
) -> None:
    start, end, eot = profile.turns
    prompts = [
        lc.get_prompt_text(_history_langchain(), tools=[PICK]),
        li.get_prompt_text(_history_llama_index(), tools=[PICK]),  # type: ignore[list-item]
    ]
    for prompt in prompts:
        assert prompt.startswith(f"<|begin_of_text|>{start}system{end}\n\n{_heads(profile)}")
        assert prompt.endswith(f"{eot}{start}assistant{end}\n\n")
        others = [p for p in PROMPT_PROFILES.values() if p is not profile]
        assert not any(_heads(other) in prompt for other in others)
        foreign = (LLAMA_4 if profile is not LLAMA_4 else TOOLACE).turns
        assert not any(token in prompt for token in foreign)
        assert f"{start}user{end}\n\nTwo shirts, please.{eot}" in prompt
        assert _expected_history(profile) in prompt


@pytest.fixture
def prompt_ids(lc: ChatToolACE) -> Iterator[list[list[int]]]:
    """The ids each generation's prompt prefill gives the model (prefix reuse off)."""
    engine = _engine(lc)
    seen: list[list[int]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(kwargs["input_ids"][0].tolist())

    handle = engine.model.get_decoder().register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def _engine(adapter: ChatToolACE | ToolACELLM) -> TransformersEngine:
    return load_engine(ModelSpec(model=adapter.model, dtype=DTYPE))


def test_the_replayed_call_prefix_is_a_control_token(
    lc: ChatToolACE, profile: PromptProfile, prompt_ids: list[list[int]]
) -> None:
    fresh = lc.model_copy(update={"reuse_prefix": False})
    fresh.bind_tools([PICK], tool_choice="none").invoke(_history_langchain(), max_tokens=1)
    ids = prompt_ids[0]
    tokenizer = _engine(lc).tokenizer
    tag = tokenizer.convert_tokens_to_ids("<|python_tag|>") if profile is not LLAMA_4 else None
    assert (tag in ids) == (profile is LLAMA_3_2)
    if profile.call_prefix:
        plain = text_encoder(tokenizer).content_ids(profile.call_prefix)
        assert not any(ids[i : i + len(plain)] == plain for i in range(len(ids)))
    assert len(ids) + 1 == lc.get_num_tokens_from_messages(_history_langchain(), tools=[PICK])


# --- Llama-4's call wrapper tokens, written by the model ---------------------------------------


@pytest.fixture(scope="module")
def llama4(llama4_path: str) -> tuple[ChatToolACE, ToolACELLM, TransformersEngine]:
    settings = {"model": llama4_path, "dtype": DTYPE}
    engine = load_engine(ModelSpec(model=llama4_path, dtype=DTYPE))
    return ChatToolACE(**settings, max_tokens=32), ToolACELLM(**settings, max_tokens=32), engine


def _wrapped(engine: TransformersEngine) -> list[int]:
    """``<|python_start|>[pick(...)]<|python_end|>`` with the real control tokens."""
    tokenizer = engine.tokenizer
    start, end = (tokenizer.convert_tokens_to_ids(t) for t in LLAMA_4.call_wrappers[0])
    return [start, *text_encoder(tokenizer).content_ids(CALL), end]


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_llama4_wrapped_call_through_langchain(
    llama4: tuple[ChatToolACE, ToolACELLM, TransformersEngine], choice: str
) -> None:
    lc, _, engine = llama4
    bound = lc.bind_tools([PICK], tool_choice=choice)
    script = _wrapped(engine)
    with steer(engine, script, script) as pending:
        invoked = bound.invoke("A red shirt in S.")
        chunks = list(bound.stream("A red shirt in S."))
    assert not pending
    assert [(c["name"], c["args"]) for c in invoked.tool_calls] == [("pick", PAST[0])]
    assert invoked.content == "" and not invoked.invalid_tool_calls
    metadata = invoked.response_metadata
    assert metadata["finish_reason"] == "stop"  # ended by <|eot|>, not by the budget
    assert invoked.usage_metadata and invoked.usage_metadata["output_tokens"] == len(script) + 1
    assert all(chunk.content == "" for chunk in chunks)  # no wrapper text shown
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("pick", PAST[0])]
    assert len([c for chunk in chunks[:-1] for c in chunk.tool_call_chunks]) > 1


@pytest.mark.parametrize("choice", ["auto", "required"])
def test_llama4_wrapped_call_through_llama_index(
    llama4: tuple[ChatToolACE, ToolACELLM, TransformersEngine], choice: str
) -> None:
    _, li, engine = llama4
    script = _wrapped(engine)
    with steer(engine, script, script) as pending:
        response = li.chat_with_tools([PICK], user_msg="A red shirt.", tool_choice=choice)
        responses = list(
            li.stream_chat_with_tools([PICK], user_msg="A red shirt.", tool_choice=choice)
        )
    assert not pending
    for final in (response, responses[-1]):
        [selection] = li.get_tool_calls_from_response(final)
        assert (selection.tool_name, selection.tool_kwargs) == ("pick", PAST[0])
        assert not final.message.content
    assert all(not r.delta for r in responses)
    early = [li.get_tool_calls_from_response(r, error_on_no_tool_call=False) for r in responses]
    assert any(calls and calls[0].tool_kwargs != PAST[0] for calls in early[:-1])


def test_llama4_spelled_out_wrappers_never_show_as_content(
    llama4: tuple[ChatToolACE, ToolACELLM, TransformersEngine],
) -> None:
    lc, _, engine = llama4
    free = lc.model_copy(update={"constrained_decoding": False}).bind_tools([PICK])
    with steer(engine, f"<|python_start|>{CALL}<|python_end|>") as pending:
        chunks = list(free.stream("A red shirt.", max_tokens=64))  # plain tokens: many
    assert not pending
    assert all(chunk.content == "" for chunk in chunks), [c.content for c in chunks]
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("pick", PAST[0])]


def test_llama4_checkpoint_stops_at_its_end_token(
    llama4: tuple[ChatToolACE, ToolACELLM, TransformersEngine],
) -> None:
    _, _, engine = llama4
    ids = {engine.tokenizer.convert_tokens_to_ids(t) for t in LLAMA_4.end_tokens}
    assert ids <= set(engine.stop_token_ids)
    assert BFCL.end_tokens[0] not in engine.tokenizer.get_vocab()  # Llama-3's are not its own


@pytest.mark.parametrize(
    ("name", "expected"),
    [("ToolACE-2-8B", BFCL), ("Llama-3.2-1B-Instruct", LLAMA_3_2), ("ToolACE-8B", TOOLACE)],
)
def test_the_profile_is_detected_from_the_folder_name(
    tiny_llama3_model_path: str, tmp_path: Path, name: str, expected: PromptProfile
) -> None:
    link = tmp_path / name
    link.symlink_to(tiny_llama3_model_path, target_is_directory=True)
    lc, li = ChatToolACE(model=str(link), dtype=DTYPE), ToolACELLM(model=str(link), dtype=DTYPE)
    assert lc.prompt_profile() is expected and li.prompt_profile() is expected
    prompt = lc.get_prompt_text("Hi", tools=[PICK])
    assert prompt == li.get_prompt_text([ChatMessage(role=MessageRole.USER, content="Hi")], [PICK])
    assert _heads(expected) in prompt


def test_a_forced_call_through_a_folder_named_for_llama32(
    tiny_llama3_model_path: str, tmp_path: Path
) -> None:
    link = tmp_path / "Llama-3.2-1B-Instruct"
    link.symlink_to(tiny_llama3_model_path, target_is_directory=True)
    bound = ChatToolACE(model=str(link), dtype=DTYPE, max_tokens=24).bind_tools(
        [PICK], tool_choice="pick"
    )
    message = bound.invoke("A red shirt in S.")
    assert isinstance(message, AIMessage) and message.tool_calls and not message.invalid_tool_calls
    for call in message.tool_calls:
        assert_valid_pick(call["name"], call["args"])
