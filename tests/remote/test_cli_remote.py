"""``toolace-integrations --base-url``: the demo and the chat generate on the vLLM server."""

from __future__ import annotations

import re

import pytest
from _servers import Proxy

from toolace_integrations.cli import main


def test_demo_and_chat_run_on_the_server_and_ask_it_for_the_model(
    vllm_model: str,
    proxy: Proxy,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    limits = ["--max-new-tokens", "8", "--max-steps", "1"]
    assert main(["demo", "--base-url", proxy.url, "--question", "Hi", *limits]) == 0
    typed = iter(["Hello", "exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    assert main(["chat", "--base-url", proxy.url, "--model", vllm_model, *limits]) == 0
    out = capsys.readouterr().out
    assert out.count(f"Model: {vllm_model} on {proxy.url}") == 2  # the first asked /models
    assert "User: Hi" in out and "User: Hello" in out
    assert len(re.findall(r"  model  [\d.]+ s, \d+ prompt \+ \d+ new tokens", out)) == 2
    assert [body["model"] for body in proxy.bodies] == [vllm_model, vllm_model]
    assert all(body["max_tokens"] <= 8 for body in proxy.bodies)
