"""A deployment as people run it: a served name, the server's limits, errors that say what to do.

The module starts its own vLLM server on the session's checkpoint with ``--served-model-name
toolace`` (once per module: the machine has two cores).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from _servers import Proxy, Stub, running_vllm, send
from langchain.agents.middleware import SummarizationMiddleware

from toolace_integrations import ChatToolACE
from toolace_integrations.errors import InvalidSettingError, ModelLoadError, PromptTooLongError
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine
from toolace_integrations.remote import RemoteBackend, RemoteError
from toolace_integrations.testing.vllm_server import SMALL_SERVER_FLAGS

ADAPTERS = [ChatToolACE, ToolACELLM]


@pytest.fixture(scope="module")
def renamed_url(vllm_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM serving the session's checkpoint (a folder) under the name ``toolace``."""
    flags = (*SMALL_SERVER_FLAGS, "--served-model-name", "toolace")
    with running_vllm(vllm_model, tmp_path_factory.mktemp("renamed") / "log", flags) as url:
        yield url


@pytest.fixture
def renamed(renamed_url: str) -> Iterator[Proxy]:
    front = Proxy(renamed_url)
    yield front
    front.close()


@pytest.fixture
def made() -> Iterator[list[Any]]:
    """Adapters a test made, whose connections are closed after it."""
    adapters: list[Any] = []
    yield adapters
    for adapter in adapters:
        adapter.unload()


def test_a_served_name_finds_its_tokenizer_through_the_server(
    renamed: Proxy, vllm_engine: TransformersEngine, made: list[Any]
) -> None:
    """``model`` is only the served name: the tokenizer comes from the ``root`` it serves."""
    made.append(chat := ChatToolACE(model="toolace", base_url=renamed.url, max_tokens=4))
    answer = chat.invoke("Hi")
    assert answer.usage_metadata and answer.usage_metadata["output_tokens"] > 0
    assert renamed.bodies[-1]["model"] == "toolace"
    assert renamed.bodies[-1]["prompt"] == vllm_engine.encode([{"role": "user", "content": "Hi"}])


async def test_tokenizer_setting_with_a_served_name_on_both_adapters(
    renamed: Proxy, vllm_model: str, made: list[Any]
) -> None:
    settings = {"model": "toolace", "tokenizer": vllm_model, "base_url": renamed.url}
    chat = ChatToolACE(**settings, max_tokens=4)
    llm = ToolACELLM(**settings, max_new_tokens=4)
    made += [chat, llm]
    assert chat._backend().tokenizer == llm._load().tokenizer == vllm_model
    assert (await chat.ainvoke("Hi")).usage_metadata is not None
    from llama_index.core.base.llms.types import ChatMessage

    assert (await llm.achat([ChatMessage(role="user", content="Hi")])).raw is not None
    assert [body["model"] for body in renamed.bodies] == ["toolace", "toolace"]


def test_the_tokenizer_setting_without_a_server_is_refused(vllm_model: str) -> None:
    with pytest.raises(InvalidSettingError, match="base_url"):
        ChatToolACE(model=vllm_model, tokenizer=vllm_model).invoke("Hi")


@pytest.mark.parametrize("model", ["toolace", "folder"])
def test_limits_are_the_servers_before_any_call(
    renamed: Proxy, vllm_model: str, model: str, made: list[Any]
) -> None:
    """The summarization middleware and LlamaIndex memory size themselves before any call."""
    name = vllm_model if model == "folder" else "toolace"  # the folder: found by its root
    settings: dict[str, Any] = {"model": name, "tokenizer": vllm_model, "base_url": renamed.url}
    chat, llm = ChatToolACE(**settings), ToolACELLM(**settings)
    made += [chat, llm]
    assert llm.metadata.context_window == 2048  # --max-model-len
    assert chat.profile is not None and chat.profile["max_input_tokens"] == 2048
    SummarizationMiddleware(model=chat, trigger=("fraction", 0.5))  # reads the profile
    assert renamed.bodies == []  # nothing generated to learn it
    with pytest.raises(PromptTooLongError, match="2048"):
        chat.invoke("word " * 2100)
    assert renamed.bodies == []  # the same limit refuses the prompt before sending it


def test_constructing_asks_the_server_nothing() -> None:
    chat = ChatToolACE(base_url="http://127.0.0.1:9/v1", max_retries=0)  # nothing listens there
    assert chat.profile is not None and chat.profile["tool_calling"] is True
    with pytest.raises(RemoteError, match="could not be reached"):
        chat.profile.get("max_input_tokens")  # asked now, and said so: no made-up number
    chat.unload()


def test_a_base_url_without_v1_is_told_to_add_it(
    renamed_url: str, vllm_model: str, made: list[Any]
) -> None:
    root = renamed_url.removesuffix("/v1")
    chat = ChatToolACE(model="toolace", tokenizer=vllm_model, base_url=root, max_retries=0)
    made.append(chat)
    with pytest.raises(RemoteError, match="does not end in /v1") as caught:
        chat.invoke("Hi")
    assert caught.value.status == 404 and f"base_url='{root}/v1'" in str(caught.value)


class _Renamed(Stub):
    """A server that serves ``toolace`` from a folder this machine does not have."""

    def answer_get(self, handler: BaseHTTPRequestHandler) -> None:
        card = {"id": "toolace", "root": "/srv/models/toolace-8b", "max_model_len": 4096}
        data = json.dumps({"object": "list", "data": [card]}).encode()
        send(handler, 200, data, "application/json")


def test_a_served_root_not_on_this_machine_says_what_to_pass() -> None:
    server = _Renamed(lambda handler, body, index: send(handler, 500, b"", "text/plain"))
    try:
        with RemoteBackend(server.url, "toolace") as backend:
            assert backend.context_window == 4096
            with pytest.raises(ModelLoadError, match="/srv/models/toolace-8b.*tokenizer="):
                backend.prompt_ids([{"role": "user", "content": "Hi"}])
    finally:
        server.close()
    assert server.bodies == []


def test_an_uncached_hub_tokenizer_offline_fails_without_touching_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``HF_HUB_OFFLINE`` set after huggingface_hub was imported is still respected."""
    from huggingface_hub.utils import build_hf_headers

    build_hf_headers()  # huggingface_hub's own once-per-process user-agent lookup, done now
    attempts: list[Any] = []

    def no_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        raise socket.gaierror(f"no network in this test ({host})")

    def no_connect(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise ConnectionRefusedError(f"no network in this test ({address})")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    monkeypatch.setattr(socket.socket, "connect", no_connect)
    backend = RemoteBackend(
        "http://127.0.0.1:9/v1", "toolace", tokenizer="toolace-tests/tokenizer-nowhere"
    )
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE=1 after downloading once"):
        backend.prompt_ids([{"role": "user", "content": "Hi"}])
    assert attempts == []
