"""ToolACE on an OpenAI-compatible server (vLLM): our prompt text in, completion text out.

:class:`RemoteBackend` renders the conversation locally with the checkpoint's own tokenizer and
chat template (only the tokenizer is loaded, never the weights), sends that text to the server's
``/v1/completions`` endpoint and hands the answer back to the same parser the local engine uses.
Prompt rendering and call parsing therefore never depend on the server's chat template or tool
parser. With ``tool_choice`` set, the tool-call grammar travels as vLLM's structured-outputs
grammar (xgrammar's EBNF), so the server constrains decoding the way the local engine does.

Notes:
    The server tokenizes the text, so text inside message content that spells a special token
    (``<|eot_id|>``) becomes that control token, as with vLLM's own chat endpoint; the local engine
    keeps it plain text. vLLM ignores request fields it does not know, so a ``grammar_param`` the
    server does not support fails open (unconstrained output, still parsed strictly); servers that
    reject unknown fields (``transformers serve``) need ``grammar_param="none"``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache, partial
from typing import Any, Literal

import httpx

from toolace_integrations.encoding import PromptEncoder, load_tokenizer
from toolace_integrations.errors import PromptTooLongError, ToolACEError
from toolace_integrations.generation import (
    FinishReason,
    GenerationRequest,
    GenerationResult,
    SamplingParams,
    StreamEvent,
)
from toolace_integrations.grammar import tool_call_grammar

__all__ = ["GrammarParam", "RemoteBackend", "RemoteError"]

logger = logging.getLogger(__name__)

GrammarParam = Literal["structured_outputs", "guided_grammar", "none"]
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class RemoteError(ToolACEError, RuntimeError):
    """The server could not be reached or answered with an error.

    Attributes:
        url: The endpoint called.
        status: The HTTP status, or ``None`` when no answer came (connection error, timeout).
        body: The server's answer (or the transport error's text), for the log.
    """

    def __init__(self, url: str, status: int | None, body: str, attempts: int = 1) -> None:
        self.url, self.status, self.body = url, status, body
        what = f"answered HTTP {status}" if status is not None else "could not be reached"
        advice = (
            "Check that the server runs and base_url ends in /v1 (e.g. http://host:8000/v1)."
            if status is None or status >= 500 or status == 429
            else "Check `model` (the served model name) and, for servers without structured "
            "outputs, set grammar_param='none'."
        )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{url} {what}{tries}: {body[:1000]} {advice}")


@lru_cache(maxsize=8)
def _tokenizer(name: str, revision: str | None) -> Any:
    return load_tokenizer(name, revision)


class RemoteBackend:
    """A :class:`~toolace_integrations.chat.Backend` that generates on a vLLM server.

    Construction is cheap; the tokenizer loads on the first prompt and HTTP clients open on the
    first request. Thread-safe; close it (or use ``with``) to release pooled connections.

    Args:
        base_url: The server's OpenAI API root, e.g. ``http://host:8000/v1``.
        model: The served model name (vLLM's ``--served-model-name``, by default the model id).
        tokenizer: Hub id or folder of the tokenizer whose chat template renders prompts;
            defaults to ``model``. Must be the tokenizer the server uses.
        revision: Tokenizer revision; ``None`` is the default branch.
        api_key: Bearer token; ``None`` reads ``TOOLACE_API_KEY``, then ``OPENAI_API_KEY``.
        timeout: Seconds to wait to connect, for an answer, or for the next streamed chunk.
        max_retries: Retries after a connection error, timeout, 429 or 5xx, before any output.
        backoff: Seconds before the first retry; doubles on each later one.
        grammar_param: How the tool-call grammar is sent: ``structured_outputs`` (vLLM >= 0.10.2;
            the only form since 0.12), ``guided_grammar`` (older vLLM) or ``none``.
        batch_prompts: Send a batch's prompts with equal settings as one request (a list
            ``prompt``); on a 400/422 answer it falls back to one request per prompt.
        max_concurrency: Requests in flight at once for a batch sent prompt by prompt.
        context_window: The server's ``--max-model-len``; 0 asks ``/models`` (vLLM reports it).
        extra_body: More fields for every request body, e.g. ``{"top_k": 20}``.

    Example:
        >>> backend = RemoteBackend("http://localhost:8000/v1", "Team-ACE/ToolACE-8B")
        >>> backend.model_name
        'Team-ACE/ToolACE-8B'
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: str | None = None,
        revision: str | None = None,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        grammar_param: GrammarParam = "structured_outputs",
        batch_prompts: bool = True,
        max_concurrency: int = 16,
        context_window: int = 0,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer_name = tokenizer or model
        self.revision = revision
        self.api_key = (
            api_key or os.environ.get("TOOLACE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        )
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.max_retries, self.backoff = max_retries, backoff
        self.grammar_param: GrammarParam = grammar_param
        self.batch_prompts, self.max_concurrency = batch_prompts, max_concurrency
        self.extra_body = dict(extra_body or {})
        self._context_window = context_window or None
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The served model name."""
        return self.model

    @property
    def context_window(self) -> int:
        """The server's context length: as configured, else from ``/models``, else 0."""
        if self._context_window is None:
            try:
                response = self._http().get(f"{self.base_url}/models", headers=self._headers())
                cards = response.raise_for_status().json().get("data", [])
            except (httpx.HTTPError, ValueError) as error:
                logger.info("Could not read the context length from %s: %s", self.base_url, error)
                return 0
            lengths = [c.get("max_model_len") for c in cards if c.get("id") == self.model]
            self._context_window = int(lengths[0] or 0) if lengths else 0
        return self._context_window

    def prompt_text(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt the chat template renders; the same text the local engine renders."""
        return PromptEncoder(self._tok()).prompt_text(messages)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """Yield text deltas as the server streams them; the last event carries the result.

        Setting ``cancel`` or closing the iterator closes the connection, which makes vLLM
        abort the request; it is noticed when the next chunk arrives.
        """
        (prompt,), body = self._body([request], stream=True)
        answer = _Answer(request.sampling.stop)
        response = self._send(body)
        try:
            for line in response.iter_lines():
                if cancel is not None and cancel.is_set():
                    break
                delta = answer.feed_line(line, response.url)
                if delta:
                    yield StreamEvent(delta)
                if answer.done:
                    break
        finally:
            response.close()
        yield StreamEvent(answer.flush(), self._result(answer, prompt))

    def generate(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """Generate to the end (or until ``cancel`` is set) and return the result."""
        *_, last = self.stream(request, cancel)
        assert last.result is not None
        return last.result

    def generate_batch(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event | None = None
    ) -> list[GenerationResult]:
        """Requests with equal settings go as one list-prompt request, the rest concurrently.

        ``cancel`` stops the requests sent one by one; a list-prompt request runs to its end.
        """
        results: dict[int, GenerationResult] = {}
        single: list[int] = []
        groups: dict[tuple[SamplingParams, str | None], list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault((request.sampling, self._grammar(request)), []).append(index)
        for indices in groups.values():
            if not self.batch_prompts or len(indices) == 1:
                single += indices
                continue
            try:
                batch = self._complete_list([requests[i] for i in indices])
            except RemoteError as error:
                if error.status not in (400, 422):
                    raise
                logger.info("The server refused a list prompt; sending prompts one by one.")
                single += indices
                continue
            results.update(zip(indices, batch, strict=True))
        if single:
            with ThreadPoolExecutor(max(1, min(self.max_concurrency, len(single)))) as pool:
                generate = partial(self.generate, cancel=cancel)
                done = pool.map(generate, [requests[i] for i in single])
                results.update(zip(single, done, strict=True))
        return [results[i] for i in range(len(requests))]

    def close(self) -> None:
        """Close pooled connections; the backend reopens them when used again."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> RemoteBackend:
        """Use the backend in a ``with`` block that closes it."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close pooled connections."""
        self.close()

    def _complete_list(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        prompts, body = self._body(requests, stream=False)
        response = self._send(body)
        response.read()
        choices = sorted(response.json().get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != len(requests):
            raise RemoteError(str(response.url), response.status_code, response.text)
        results = []
        for choice, prompt in zip(choices, prompts, strict=True):
            answer = _Answer(requests[0].sampling.stop)
            answer.feed({"choices": [choice]})
            answer.flush()
            results.append(self._result(answer, prompt))
        return results

    def _body(
        self, requests: Sequence[GenerationRequest], *, stream: bool
    ) -> tuple[list[str], dict[str, Any]]:
        """The wire prompt(s) and the request body; ``requests`` share sampling and grammar."""
        prompts = [self._wire_prompt(r) for r in requests]
        sampling = requests[0].sampling
        max_tokens = sampling.max_new_tokens
        if self.context_window:
            longest = max(len(self._count(p)) for p in prompts)
            if longest >= self.context_window:
                raise PromptTooLongError(longest, self.context_window, max_tokens)
            max_tokens = min(max_tokens, self.context_window - longest)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompts[0] if len(prompts) == 1 else prompts,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature or 0.0,
            "stream": stream,
        }
        if sampling.temperature:  # top_p=1 unless set: the model's generation_config has 0.9
            body["top_p"] = 1.0 if sampling.top_p is None else sampling.top_p
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if stream:
            body["stream_options"] = {"include_usage": True}
        grammar = self._grammar(requests[0])
        if grammar is not None and self.grammar_param == "structured_outputs":
            body["structured_outputs"] = {"grammar": grammar}
        elif grammar is not None and self.grammar_param == "guided_grammar":
            body["guided_grammar"] = grammar
        body.update(self.extra_body)
        return prompts, body

    def _wire_prompt(self, request: GenerationRequest) -> str:
        """The prompt text minus a leading BOS the server's tokenizer adds again by itself."""
        text = self.prompt_text(request.messages)
        tokenizer = self._tok()
        bos = tokenizer.bos_token
        if bos and text.startswith(bos) and _adds_bos(self.tokenizer_name, self.revision):
            return text[len(bos) :]
        return text

    def _grammar(self, request: GenerationRequest) -> str | None:
        if request.grammar_choice is None or self.grammar_param == "none":
            return None
        return tool_call_grammar(request.tools, request.grammar_choice)

    def _result(self, answer: _Answer, prompt: str) -> GenerationResult:
        usage = answer.usage
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        if not isinstance(prompt_tokens, int):
            prompt_tokens = len(self._count(prompt))
        if not isinstance(completion_tokens, int) or answer.stopped:
            completion_tokens = len(self._count(answer.text, special=False))
        finish: FinishReason = (
            "length" if answer.finish == "length" and not answer.stopped else "stop"
        )
        return GenerationResult(answer.text, finish, prompt_tokens, completion_tokens)

    def _send(self, body: Mapping[str, Any]) -> httpx.Response:
        """POST to ``/completions`` with retries; the response is open for streaming."""
        url = f"{self.base_url}/completions"
        client = self._http()
        for attempt in range(self.max_retries + 1):
            try:
                request = client.build_request("POST", url, json=body, headers=self._headers())
                response = client.send(request, stream=True)
                if response.status_code < 400:
                    return response
                response.read()
                response.close()
                failure = RemoteError(url, response.status_code, response.text, attempt + 1)
            except httpx.TransportError as error:
                failure = RemoteError(url, None, repr(error), attempt + 1)
            if not self._retryable(failure, attempt):
                raise failure
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _retryable(self, failure: RemoteError, attempt: int) -> bool:
        retry = failure.status is None or failure.status in _RETRY_STATUS
        if retry and attempt < self.max_retries:
            logger.warning("%s; retry %d of %d", failure, attempt + 1, self.max_retries)
            return True
        return False

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout)
            return self._client

    def _tok(self) -> Any:
        return _tokenizer(self.tokenizer_name, self.revision)

    def _count(self, text: str, *, special: bool = True) -> list[int]:
        ids: list[int] = self._tok()(text, add_special_tokens=special)["input_ids"]
        return ids


@lru_cache(maxsize=8)
def _adds_bos(name: str, revision: str | None) -> bool:
    tokenizer = _tokenizer(name, revision)
    bos_id = tokenizer.bos_token_id
    return bos_id is not None and tokenizer("a")["input_ids"][:1] == [bos_id]


class _Answer:
    """One completion's text as chunks arrive, cut at the first stop string."""

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = tuple(s for s in stop if s)
        self.text = ""
        self.sent = 0
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.stopped = False
        self.done = False

    def feed_line(self, line: str, url: Any) -> str:
        """Take one SSE line; returns the text that may be shown now."""
        if not line.startswith("data:"):
            return ""
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return ""
        chunk = json.loads(data)
        if "error" in chunk:
            raise RemoteError(str(url), 200, data)
        return self.feed(chunk)

    def feed(self, chunk: Mapping[str, Any]) -> str:
        """Take one completion object or stream chunk."""
        if chunk.get("usage"):
            self.usage = dict(chunk["usage"])
        for choice in chunk.get("choices") or ():
            self.text += choice.get("text") or ""
            self.finish = choice.get("finish_reason") or self.finish
        return self._delta(final=False)

    def flush(self) -> str:
        """The text not yet shown."""
        return self._delta(final=True)

    def _delta(self, *, final: bool) -> str:
        cuts = [self.text.find(s) for s in self.stop if s in self.text]
        if cuts:
            self.text, self.stopped, self.done, final = self.text[: min(cuts)], True, True, True
        shown = self.text
        if not final:
            held = max((len(s) - 1 for s in self.stop), default=0)
            shown = shown[: max(self.sent, len(shown) - held)]
        delta, self.sent = shown[self.sent :], max(self.sent, len(shown))
        return delta
