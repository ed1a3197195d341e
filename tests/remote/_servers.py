"""Loopback HTTP helpers: a real vLLM server, a recording proxy in front of it, a scripted stub."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from toolace_integrations.testing.vllm_server import SMALL_SERVER_FLAGS, VLLMServer, VLLMStartError


@contextmanager
def running_vllm(
    model: str, log_path: Path, flags: tuple[str, ...] = SMALL_SERVER_FLAGS
) -> Iterator[str]:
    """The ``/v1`` URL of a vLLM server on ``model``, stopped on exit.

    Skips when ``TOOLACE_SKIP_VLLM=1``; fails with the server's log tail when vLLM cannot start.
    """
    if os.environ.get("TOOLACE_SKIP_VLLM") == "1":
        pytest.skip("TOOLACE_SKIP_VLLM=1: the tests that need a vLLM server are skipped")
    try:
        server = VLLMServer(model, log_path, flags=flags)
        url = server.start(timeout=240)  # under pytest-timeout, so the log tail is shown
    except VLLMStartError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield url
    finally:
        server.stop()


Script = Callable[[BaseHTTPRequestHandler, dict[str, Any], int], None]
"""A stub's answer: (handler, request body, 0-based request number) -> writes the response."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many clients connect at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up (cancelled streams, timeouts under test) are expected."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, threading.BrokenBarrierError)):
            super().handle_error(request, client_address)


class _Loopback:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], index: int) -> None:
        raise NotImplementedError

    def answer_get(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_error(404)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                owner.answer_get(self)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.bodies.append(body)
                owner.headers.append(dict(self.headers))
                owner.answer(self, body, len(owner.bodies) - 1)

        return Handler


class Proxy(_Loopback):
    """Forwards to vLLM; records bodies, answers 503 ``fail_next`` times, drops body fields."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removesuffix("/v1")
        self.fail_next = 0
        self.drop: set[str] = set()
        super().__init__()

    def answer_get(self, handler: BaseHTTPRequestHandler) -> None:
        self._forward(handler, "GET", None)

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], index: int) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            send(handler, 503, b'{"error": "overloaded, try later"}', "application/json")
            return
        self._forward(handler, "POST", {k: v for k, v in body.items() if k not in self.drop})

    def _forward(
        self, handler: BaseHTTPRequestHandler, method: str, body: dict[str, Any] | None
    ) -> None:
        with httpx.stream(method, self.upstream + handler.path, json=body, timeout=120) as up:
            handler.send_response(up.status_code)
            handler.send_header("Content-Type", up.headers.get("content-type", ""))
            handler.send_header("Connection", "close")
            handler.end_headers()
            for piece in up.iter_raw():
                handler.wfile.write(piece)
                handler.wfile.flush()
        handler.close_connection = True


class Stub(_Loopback):
    """Answers POSTs with ``script(handler, body, request_number)``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        super().__init__()

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], index: int) -> None:
        self.script(handler, body, index)
        handler.close_connection = True


def send(handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
    """A whole response with a Content-Length."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def sse(handler: BaseHTTPRequestHandler, lines: list[str], *, pause: float = 0.0) -> None:
    """An event stream of ``lines`` (each sent as ``line\\n\\n``), closing after the last."""
    handler.send_response(200)
    handler.send_header("Content-Type", "text/event-stream")
    handler.send_header("Connection", "close")
    handler.end_headers()
    for line in lines:
        handler.wfile.write(f"{line}\n\n".encode())
        handler.wfile.flush()
        time.sleep(pause)


def chunk(text: str, finish: str | None = None) -> str:
    """One ``data:`` line of a completion stream."""
    choice = {"index": 0, "text": text, "finish_reason": finish}
    return "data: " + json.dumps({"choices": [choice]})


def good_stream(text: str = "Sunny.") -> list[str]:
    """A whole well-formed stream answering ``text``."""
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    done = "data: " + json.dumps({"choices": [], "usage": usage})
    return [chunk(text[:2]), chunk(text[2:], "stop"), done, "data: [DONE]"]
