"""Remote faults (issue 19.7) and API keys (19.9) against a scripted loopback stub server.

Each fault is retried while no output has been shown and otherwise surfaces as ``RemoteError``
carrying its cause; none of them ever becomes an empty success.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from _servers import Script, Stub, chunk, good_stream, send, sse

from toolace_integrations.core.chat import build_request, run_chat
from toolace_integrations.core.generation import GenerationRequest, SamplingParams
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.tools import FunctionSpec, ToolChoice
from toolace_integrations.remote import (
    GrammarNotEnforcedError,
    InsecureKeyWarning,
    RemoteBackend,
    RemoteConfigError,
    RemoteError,
)
from toolace_integrations.remote.answer import MalformedAnswer
from toolace_integrations.testing.vllm_server import VLLMServer, VLLMStartError

REQUEST = GenerationRequest(({"role": "user", "content": "Weather?"},), SamplingParams(8))
UNIT = FunctionSpec(
    "set_unit",
    "Set the unit.",
    {"type": "object", "properties": {"unit": {"enum": ["c", "f"]}}, "required": ["unit"]},
)


@pytest.fixture
def stub() -> Iterator[Any]:
    servers: list[Stub] = []

    def start(script: Script) -> Stub:
        servers.append(Stub(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def backend(url: str, model: str, **options: Any) -> RemoteBackend:
    settings: dict[str, Any] = {"backoff": 0.01, "context_window": 4096, "max_retries": 2}
    return RemoteBackend(url, model, **{**settings, **options})


def fault_then_good(fault: Script, faults: int = 1) -> Script:
    def script(handler: BaseHTTPRequestHandler, body: dict[str, Any], index: int) -> None:
        if index < faults:
            fault(handler, body, index)
        else:
            sse(handler, good_stream())

    return script


def drop_before_output(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    handler.wfile.write(b"5\r\ndata:")  # a chunk cut short, then the connection drops
    handler.wfile.flush()


def drop_after_output(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    event = f"{chunk('Sun')}\n\n".encode()
    handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
    handler.wfile.write(b"40\r\ndata: {")  # then the connection drops mid-chunk
    handler.wfile.flush()


def stall(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.flush()
    time.sleep(1.0)


def html_page(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
    page = b"<html><body><h1>Bad gateway</h1>upstream timed out</body></html>\n"
    send(handler, 200, page, "text/html")


def lines_of(*lines: str) -> Script:
    return lambda handler, body, index: sse(handler, list(lines))


MALFORMED = {
    "not-json": lines_of("data: {not json"),
    "not-an-object": lines_of("data: [1, 2]"),
    "choices-not-a-list": lines_of('data: {"choices": "abc"}'),
    "text-not-a-string": lines_of('data: {"choices": [{"text": 5, "finish_reason": null}]}'),
    "error-event": lines_of('data: {"error": {"message": "engine died"}}'),
    "ends-without-finish": lines_of(chunk("Sunny")),
    "html-page-200": html_page,
}


@pytest.mark.parametrize("fault", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_answer_is_retried_then_succeeds(
    stub: Any, tiny_model_path: str, fault: Script
) -> None:
    server = stub(fault_then_good(fault))
    with backend(server.url, tiny_model_path) as client:
        result = client.generate(REQUEST)
    assert result.text == "Sunny." and len(server.bodies) == 2


@pytest.mark.parametrize("fault", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_persistently_malformed_answer_is_a_remote_error_never_empty(
    stub: Any, tiny_model_path: str, fault: Script
) -> None:
    server = stub(fault)
    with backend(server.url, tiny_model_path, max_retries=1) as client:
        with pytest.raises(RemoteError, match="after 2 attempts") as caught:
            client.generate(REQUEST)
    assert isinstance(caught.value.__cause__, MalformedAnswer)
    assert caught.value.status == 200 and len(server.bodies) == 2


def test_malformed_list_prompt_answer_is_a_remote_error(stub: Any, tiny_model_path: str) -> None:
    def script(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
        send(handler, 200, json.dumps({"choices": [{"index": 0}]}).encode(), "application/json")

    server = stub(script)
    other = GenerationRequest(({"role": "user", "content": "Hi"},), SamplingParams(8))
    with backend(server.url, tiny_model_path, max_retries=0) as client:
        with pytest.raises(RemoteError, match="choices for 2 prompts"):
            client.generate_batch([REQUEST, other])


def test_dropped_connection_before_output_is_retried(stub: Any, tiny_model_path: str) -> None:
    server = stub(fault_then_good(drop_before_output))
    with backend(server.url, tiny_model_path) as client:
        events = list(client.stream(REQUEST))
    assert "".join(e.delta for e in events) == "Sunny." and len(server.bodies) == 2


def test_dropped_connection_after_output_raises_with_the_cause(
    stub: Any, tiny_model_path: str
) -> None:
    server = stub(fault_then_good(drop_after_output))
    shown = []
    with backend(server.url, tiny_model_path) as client:
        with pytest.raises(RemoteError, match="could not be reached") as caught:
            for event in client.stream(REQUEST):
                shown.append(event.delta)
        assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
        assert shown == ["Sun"] and len(server.bodies) == 1  # shown output is never re-sent
        assert client.generate(REQUEST).text == "Sunny."  # nothing shown yet: retried


def test_a_stall_past_the_timeout_is_retried_then_raised(stub: Any, tiny_model_path: str) -> None:
    server = stub(stall)
    with backend(server.url, tiny_model_path, timeout=0.2, max_retries=1) as client:
        with pytest.raises(RemoteError, match="after 2 attempts") as caught:
            client.generate(REQUEST)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert caught.value.status is None and len(server.bodies) == 2


def test_a_stall_then_a_good_answer_succeeds(stub: Any, tiny_model_path: str) -> None:
    server = stub(fault_then_good(stall))
    with backend(server.url, tiny_model_path, timeout=0.2) as client:
        assert client.generate(REQUEST).text == "Sunny."


def test_retries_503_then_succeeds(stub: Any, tiny_model_path: str) -> None:
    def busy(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
        send(handler, 503, b'{"error": "overloaded, try later"}', "application/json")

    server = stub(fault_then_good(busy, faults=2))
    with backend(server.url, tiny_model_path) as client:
        assert client.generate(REQUEST).text == "Sunny."
    assert len(server.bodies) == 3


def test_persistent_503_names_url_status_and_body(stub: Any, tiny_model_path: str) -> None:
    def busy(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
        send(handler, 503, b'{"error": "overloaded, try later"}', "application/json")

    server = stub(busy)
    with backend(server.url, tiny_model_path) as client:
        with pytest.raises(RemoteError) as caught:
            client.generate(REQUEST)
    error = caught.value
    assert error.status == 503 and "overloaded" in error.body
    assert error.url == f"{server.url}/completions" and error.url in str(error)
    assert "after 3 attempts" in str(error) and len(server.bodies) == 3


def test_client_errors_are_not_retried(stub: Any, tiny_model_path: str) -> None:
    def bad(handler: BaseHTTPRequestHandler, body: Any, index: int) -> None:
        send(handler, 400, b'{"error": "bad grammar"}', "application/json")

    server = stub(bad)
    with backend(server.url, tiny_model_path) as client:
        with pytest.raises(RemoteError, match="HTTP 400") as caught:
            client.generate(REQUEST)
    assert "after" not in str(caught.value) and len(server.bodies) == 1


def test_unreachable_server_is_retried_then_surfaced(tiny_model_path: str) -> None:
    with backend("http://127.0.0.1:9/v1", tiny_model_path, max_retries=1) as client:
        with pytest.raises(RemoteError, match="could not be reached after 2 attempts") as caught:
            client.generate(REQUEST)
    assert caught.value.status is None and isinstance(caught.value.__cause__, httpx.ConnectError)


def test_cancel_stops_reading_without_an_error(stub: Any, tiny_model_path: str) -> None:
    server = stub(lambda h, b, i: sse(h, [chunk("a")] * 50 + good_stream(), pause=0.01))
    cancel = threading.Event()
    with backend(server.url, tiny_model_path) as client:
        events = []
        for event in client.stream(REQUEST, cancel):
            events.append(event)
            cancel.set()
    assert events[-1].result is not None and events[-1].result.finish_reason == "stop"
    assert len(events) <= 3


@pytest.mark.parametrize(
    "choice", [ToolChoice("required"), ToolChoice("named", "set_unit")], ids=["any", "named"]
)
def test_a_server_ignoring_the_grammar_cannot_pass_text_off_as_a_forced_call(
    stub: Any, tiny_model_path: str, choice: ToolChoice
) -> None:
    server = stub(lambda h, b, i: sse(h, good_stream("It is sunny.")))
    request = build_request([Message("user", "Celsius")], [UNIT], tool_choice=choice)
    with backend(server.url, tiny_model_path) as client:
        with pytest.raises(GrammarNotEnforcedError, match="ignored the tool-call grammar"):
            run_chat(client, request)
    assert server.bodies[0]["structured_outputs"]["grammar"].startswith("root ::=")
    assert len(server.bodies) == 1  # not retried: the same request would be ignored again


def test_a_kept_grammar_passes_the_check(stub: Any, tiny_model_path: str) -> None:
    server = stub(lambda h, b, i: sse(h, good_stream('[set_unit(unit="c")]')))
    request = build_request([Message("user", "C")], [UNIT], tool_choice=ToolChoice("required"))
    with backend(server.url, tiny_model_path) as client:
        turn = run_chat(client, request)
    assert [call.arguments for call in turn.parsed.calls] == [{"unit": "c"}]


def test_guided_grammar_is_refused(tiny_model_path: str) -> None:
    with pytest.raises(RemoteConfigError, match="ignores 'guided_grammar'"):
        RemoteBackend("http://127.0.0.1:1/v1", tiny_model_path, grammar_param="guided_grammar")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    ["http://10.1.2.3:8000/v1", "http://gpu-box:8000/v1", "http://[2001:db8::1]:8000/v1"],
)
def test_a_key_bound_for_another_host_in_clear_warns(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.warns(InsecureKeyWarning, match="unencrypted"):
        RemoteBackend(url, "m")


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://127.0.0.1:8000/v1", "sk-test"),
        ("http://localhost:8000/v1", "sk-test"),
        ("http://[::1]:8000/v1", "sk-test"),
        ("https://gpu-box:8000/v1", "sk-test"),
        ("http://gpu-box:8000/v1", None),
    ],
)
def test_no_warning_over_tls_to_loopback_or_without_a_key(
    url: str, key: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("TOOLACE_API_KEY", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RemoteBackend(url, "m", api_key=key)


def test_the_key_is_sent_as_a_bearer_token(
    stub: Any, tiny_model_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLACE_API_KEY", "secret-123")
    server = stub(lambda h, b, i: sse(h, good_stream()))
    with backend(server.url, tiny_model_path) as client:
        client.generate(REQUEST)
    assert server.headers[-1]["Authorization"] == "Bearer secret-123"


def test_a_vllm_that_cannot_start_fails_with_its_log_tail(tmp_path: Any) -> None:
    """The fixture fails the run with this message; an environment without vLLM exits at once."""
    server = VLLMServer(str(tmp_path), tmp_path / "server.log", python=sys.executable)
    with pytest.raises(VLLMStartError, match="vLLM exited") as caught:
        server.start(timeout=60)
    assert "No module named 'vllm'" in str(caught.value) and "last" in str(caught.value)


def test_a_missing_vllm_environment_says_how_to_get_one(tmp_path: Any) -> None:
    server = VLLMServer(str(tmp_path), tmp_path / "log", python=str(tmp_path / "no-python"))
    with pytest.raises(VLLMStartError, match="make test.*TOOLACE_SKIP_VLLM=1"):
        server.start()
