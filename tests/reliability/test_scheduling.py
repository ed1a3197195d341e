"""What the scheduler decides, seen by callers: joining, leaving, compiling, letting go.

- A request arriving while a long batch decodes joins it at the next token instead of waiting
  for it, and the long answer is still the one it gives alone (its rows resume exactly).
- A caller that times out inside a running batch is released within a few tokens while the
  batch goes on for the others.
- Grammars compile in the callers' threads, never on the one thread that runs the model.
- Backends that go away take their scheduler and worker thread with them.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest
from _hooks import DTYPE, ForwardCounter, await_until, never_stop, slow_forwards, wait_until
from langchain_core.tools import tool

from toolace_integrations.core.chat import arun_chat, build_request
from toolace_integrations.format.prompt import Message
from toolace_integrations.langchain import ChatToolACE
from toolace_integrations.local.engine import TransformersEngine
from toolace_integrations.local.grammar import GrammarConstraint
from toolace_integrations.remote import RemoteBackend

DEADLINE = 120.0
FEW = 8  # tokens a cancellation may still take to land


def get_weather(city: Literal["Paris", "Tokyo"]) -> str:
    """Get the weather forecast for a city."""
    return "sunny"


@pytest.fixture(scope="module")
def lc(tiny_model_path: str) -> ChatToolACE:
    return ChatToolACE(model=tiny_model_path, dtype=DTYPE, max_tokens=10)


async def test_a_request_arriving_mid_batch_joins_it_and_the_long_answer_is_unchanged(
    lc: ChatToolACE, engine: TransformersEngine, forwards: ForwardCounter
) -> None:
    long_tokens = 120
    with never_stop(engine):
        alone = await lc.ainvoke("Tell me a long story.", max_tokens=long_tokens)
        short_alone = await lc.ainvoke("Hi", max_tokens=3)
        started = forwards.calls
        long = asyncio.ensure_future(lc.ainvoke("Tell me a long story.", max_tokens=long_tokens))
        assert await await_until(lambda: forwards.calls - started >= 5, timeout=DEADLINE)
        short = await asyncio.wait_for(lc.ainvoke("Hi", max_tokens=3), DEADLINE)
        assert not long.done(), "the short request waited for the long batch to finish"
        joined = await asyncio.wait_for(long, DEADLINE)
    assert short.content == short_alone.content
    assert joined.content == alone.content
    counts = ("input_tokens", "output_tokens")  # cache reads depend on what ran before
    assert joined.usage_metadata and alone.usage_metadata
    assert [joined.usage_metadata[k] for k in counts] == [alone.usage_metadata[k] for k in counts]


async def test_a_timed_out_caller_leaves_its_running_batch_within_a_few_tokens(
    lc: ChatToolACE, engine: TransformersEngine, forwards: ForwardCounter
) -> None:
    marks: list[int] = []
    with never_stop(engine), slow_forwards(engine, 0.01):
        # Equal settings: the victim shares its batch with the others.
        others = asyncio.gather(*(lc.ainvoke(f"Story {i}", max_tokens=120) for i in range(3)))
        victim = lc.ainvoke("Tell me a very long story.", max_tokens=120)
        asyncio.get_running_loop().call_later(0.3, lambda: marks.append(forwards.calls))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(victim, 0.3)
        released_after = forwards.calls - marks[0]
        assert not others.done(), "the batch should still be running for the other callers"
        results = await asyncio.wait_for(others, DEADLINE)
    assert released_after <= FEW, f"released {released_after} tokens after its timeout"
    assert [m.usage_metadata["output_tokens"] for m in results] == [120, 120, 120]


async def test_grammars_compile_in_the_callers_threads(
    lc: ChatToolACE, engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiling: list[int] = []
    generating: set[int] = set()
    compile_grammar = GrammarConstraint.compile

    def recording(self: GrammarConstraint, grammar: str) -> Any:
        compiling.append(threading.get_ident())
        return compile_grammar(self, grammar)

    monkeypatch.setattr(GrammarConstraint, "compile", recording)
    hook = engine.model.register_forward_hook(lambda *args: generating.add(threading.get_ident()))
    forced = lc.bind_tools([tool(get_weather)], tool_choice="any")
    try:
        await asyncio.wait_for(
            asyncio.gather(*(forced.ainvoke(f"Weather {i}?") for i in range(4))), DEADLINE
        )
    finally:
        hook.remove()
    assert len(compiling) == 4 and generating
    assert not generating & set(compiling), "a grammar compiled on the thread running the model"


class _Completions(BaseHTTPRequestHandler):
    """A stand-in OpenAI-compatible server: every completion streams the word "hi"."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["Content-Length"]))
        chunk = {"choices": [{"index": 0, "text": "hi", "finish_reason": "stop"}]}
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def stub_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def _scheduler_threads() -> int:
    return sum(t.name == "toolace-scheduler" for t in threading.enumerate())


async def test_backends_that_go_away_leave_no_thread_or_backend_behind(
    tiny_model_path: str, stub_url: str
) -> None:
    request = build_request([Message("user", "Hello")])
    before = _scheduler_threads()
    backends: list[weakref.ref[RemoteBackend]] = []
    for _ in range(40):
        backend = RemoteBackend(stub_url, tiny_model_path, max_retries=0)
        turn = await asyncio.wait_for(arun_chat(backend, request), DEADLINE)
        assert turn.text == "hi"
        backend.close()
        backends.append(weakref.ref(backend))
        del backend
        assert _scheduler_threads() <= before + 2
    gc.collect()
    assert all(ref() is None for ref in backends), "a backend outlived its last caller"
    assert await asyncio.to_thread(wait_until, lambda: _scheduler_threads() <= before, 10)
