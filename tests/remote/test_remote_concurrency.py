"""Concurrent async calls to a server go out together, and no batch waits for another.

A loopback stub holds every request at a barrier until all of them have arrived: a client that
queued calls behind each other (one batch at a time, at most 16) would never get past it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from _servers import Stub, good_stream, send, sse

from toolace_integrations.backends import connect
from toolace_integrations.core.chat import arun_chat
from toolace_integrations.core.generation import GenerationRequest, SamplingParams
from toolace_integrations.remote import RemoteBackend


def _request(i: int, max_new_tokens: int = 8) -> GenerationRequest:
    return GenerationRequest(
        ({"role": "user", "content": f"Question {i}"},), SamplingParams(max_new_tokens)
    )


def _answer(handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
    if body["stream"]:
        sse(handler, good_stream())
        return
    choices = [
        {"index": i, "text": f"answer {i}", "finish_reason": "stop", "token_ids": [1, 2]}
        for i in range(len(body["prompt"]))
    ]
    send(handler, 200, json.dumps({"choices": choices}).encode(), "application/json")


@pytest.fixture
def barrier_stub() -> Iterator[Any]:
    servers: list[Stub] = []

    def start(parties: int) -> Stub:
        barrier = threading.Barrier(parties, timeout=10)

        def script(handler: BaseHTTPRequestHandler, body: dict[str, Any], index: int) -> None:
            barrier.wait()  # BrokenBarrierError -> 500 if fewer requests arrive together
            _answer(handler, body)

        servers.append(Stub(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


async def test_twenty_different_calls_are_in_flight_at_once(
    barrier_stub: Any, tiny_model_path: str
) -> None:
    """Distinct settings cannot share a request, so 20 calls must be 20 requests at once."""
    server = barrier_stub(20)
    options: dict[str, Any] = {"context_window": 4096, "max_retries": 0}
    with RemoteBackend(server.url, tiny_model_path, **options) as backend:
        turns = await asyncio.gather(*(arun_chat(backend, _request(i, 4 + i)) for i in range(20)))
    assert [turn.text for turn in turns] == ["Sunny."] * 20
    assert len(server.bodies) == 20


async def test_calls_with_equal_settings_share_one_list_prompt_request(
    barrier_stub: Any, tiny_model_path: str
) -> None:
    server = barrier_stub(1)
    with RemoteBackend(server.url, tiny_model_path, context_window=4096) as backend:
        turns = await asyncio.gather(*(arun_chat(backend, _request(i)) for i in range(3)))
    assert [turn.text for turn in turns] == ["answer 0", "answer 1", "answer 2"]
    assert [turn.completion_tokens for turn in turns] == [2, 2, 2]  # the server's counts
    (body,) = server.bodies
    assert len(body["prompt"]) == 3 and body["return_token_ids"] is True


async def test_backends_that_go_away_leave_no_threads_behind(
    barrier_stub: Any, tiny_model_path: str
) -> None:
    """Issue 19.5 on the remote path: a model object per call must not keep a thread forever."""
    server = barrier_stub(1)
    before = threading.active_count()
    for i in range(30):
        backend = RemoteBackend(server.url, tiny_model_path, context_window=4096)
        await arun_chat(backend, _request(i))
        del backend
    gc.collect()
    for _ in range(50):  # idle pool workers exit once their pool is collected
        if threading.active_count() <= before + 2:
            break
        await asyncio.sleep(0.1)
    assert threading.active_count() <= before + 2


def test_connect_passes_the_remote_settings(tiny_model_path: str) -> None:
    backend = connect(
        tiny_model_path,
        base_url="http://127.0.0.1:1/v1",
        grammar_param="none",
        extra_body={"top_k": 20},
        batch_prompts=False,
        max_concurrency=3,
        context_window=100,
        timeout=5.0,
        max_retries=0,
    )
    assert isinstance(backend, RemoteBackend)
    assert (backend.grammar_param, backend.extra_body) == ("none", {"top_k": 20})
    assert (backend.batch_prompts, backend.max_concurrency, backend.context_window) == (
        False,
        3,
        100,
    )
    assert backend.max_retries == 0
    _, body = backend._body([_request(0)], stream=True)
    assert body["top_k"] == 20 and "structured_outputs" not in body


async def test_a_forked_child_gets_answers_too(barrier_stub: Any, tiny_model_path: str) -> None:
    """Issue 19.4 on the remote path: after async calls in the parent, the child's return."""
    server = barrier_stub(1)
    with RemoteBackend(server.url, tiny_model_path, context_window=4096) as backend:
        await asyncio.gather(*(arun_chat(backend, _request(i)) for i in range(2)))
        pid = os.fork()
        if pid == 0:  # the child: exit 0 only if its call returns in time
            code = 1
            try:
                turn = asyncio.run(asyncio.wait_for(arun_chat(backend, _request(7)), 20))
                code = 0 if turn.text == "Sunny." else 2
            finally:
                os._exit(code)
        for _ in range(250):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            await asyncio.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's call never returned")
    assert os.waitstatus_to_exitcode(status) == 0
