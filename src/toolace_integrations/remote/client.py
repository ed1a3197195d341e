"""ToolACE on an OpenAI-compatible server (vLLM): our prompt token ids in, completion text out.

:class:`RemoteBackend` encodes prompts locally with the local engine's
:class:`~toolace_integrations.core.encoding.PromptEncoder` (tokenizer only: no weights, no torch),
so both backends see identical prompts, sends the ids to ``/v1/completions`` and parses the answer
as the engine does. The tool-call grammar travels as vLLM's ``structured_outputs`` and the answer
is checked against its shape, so a server that ignores it cannot pass off unconstrained text.

Notes:
    ``OPENAI_API_KEY`` (or ``TOOLACE_API_KEY``) from the environment is sent as a bearer token to
    ``base_url``, as OpenAI clients do; over plain ``http://`` to a host other than this machine
    the key travels unencrypted, and a :class:`InsecureKeyWarning` says so.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, Literal

import httpx

from toolace_integrations.core.budget import BudgetCloser, budget_closer, forced
from toolace_integrations.core.encoding import PromptEncoder
from toolace_integrations.core.generation import (
    GenerationRequest,
    GenerationResult,
    StreamEvent,
)
from toolace_integrations.errors import PromptTooLongError
from toolace_integrations.format.grammar_text import tool_call_grammar
from toolace_integrations.format.profiles import TOOLACE, PromptProfile
from toolace_integrations.remote.answer import (
    Answer,
    GrammarNotEnforcedError,
    InsecureKeyWarning,
    RemoteConfigError,
    RemoteError,
    check_grammar,
    read_completion,
)
from toolace_integrations.remote.batching import RequestGatherer, send_grouped
from toolace_integrations.remote.models import (
    ServedModel,
    read_served_models,
    served_encoder,
    served_length,
)
from toolace_integrations.remote.request import (
    api_key_for,
    completion_body,
    completion_result,
    open_completion,
    replay,
)

__all__ = [
    "GrammarNotEnforcedError",
    "GrammarParam",
    "InsecureKeyWarning",
    "RemoteBackend",
    "RemoteConfigError",
    "RemoteError",
]

logger = logging.getLogger(__name__)

GrammarParam = Literal["structured_outputs", "none"]


class RemoteBackend:
    """A :class:`~toolace_integrations.core.chat.Backend` that generates on a vLLM server.

    Construction is cheap; the tokenizer loads on the first prompt and HTTP clients open on the
    first request. Thread-safe; close it (or use ``with``) to release pooled connections.

    Args:
        base_url: The server's OpenAI API root, e.g. ``http://host:8000/v1``.
        model: The served model name (vLLM's ``--served-model-name``, by default the model id).
        tokenizer: Hub id or folder of the tokenizer that encodes prompts; must be the one the
            server uses. ``None``: ``model`` when it is a folder here; else the checkpoint the
            server lists as serving ``model`` (the ``root`` in ``/models``); else ``model``.
        revision: Tokenizer revision; ``None`` is the default branch.
        api_key: Bearer token; ``None`` reads ``TOOLACE_API_KEY``, then ``OPENAI_API_KEY``.
        timeout: Seconds to wait to connect, for an answer, or for the next streamed chunk.
        max_retries: Retries after a connection error, timeout, 429, 5xx or malformed answer,
            while no output has been shown.
        backoff: Seconds before the first retry; doubles on each later one.
        grammar_param: ``structured_outputs`` sends the tool-call grammar as vLLM's
            ``structured_outputs: {"grammar": ...}`` (vLLM >= 0.10.2); ``none`` sends none, and
            a forced call the server did not keep raises :class:`GrammarNotEnforcedError`.
        batch_prompts: Send a batch's prompts with equal settings as one request (a list
            ``prompt``); on a 400/422 answer it falls back to one request per prompt.
        max_concurrency: Requests in flight at once, for concurrent async calls and for a
            batch sent prompt by prompt.
        context_window: The server's ``--max-model-len``; 0 asks ``/models`` (vLLM reports it)
            the first time it is needed, once.
        extra_body: More fields for every request body, e.g. ``{"top_k": 20}``.

    Raises:
        RemoteConfigError: an unknown ``grammar_param`` (``guided_grammar``, which vLLM ignores).

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
        if grammar_param not in ("structured_outputs", "none"):
            raise RemoteConfigError(
                f"grammar_param={grammar_param!r} is not supported; use 'structured_outputs' "
                "(vLLM >= 0.10.2) or 'none'. vLLM ignores 'guided_grammar' silently, so it would "
                "give unconstrained output."
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.tokenizer = tokenizer
        self.revision = revision
        self.api_key = api_key_for(self.base_url, api_key)
        self.timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.max_retries, self.backoff = max_retries, backoff
        self.grammar_param: GrammarParam = grammar_param
        self.batch_prompts, self.max_concurrency = batch_prompts, max_concurrency
        self.extra_body = dict(extra_body or {})
        self._context_window = context_window or None
        self._served: tuple[ServedModel, ...] | None = None
        self._encoders: dict[bool, PromptEncoder] = {}
        self._client: httpx.Client | None = None
        self._gatherer: RequestGatherer | None = None
        self._lock, self._pid = threading.Lock(), os.getpid()

    @property
    def model_name(self) -> str:
        """The served model name."""
        return self.model

    @property
    def context_window(self) -> int:
        """The server's context length: as configured, else ``/models``' (read once), else 0.

        Raises:
            RemoteError: the server could not be asked (after the retries).
        """
        if self._context_window is None:
            self._context_window = served_length(self.served_models(), self.model)
        return self._context_window

    def served_models(self) -> tuple[ServedModel, ...]:
        """The server's ``/models`` list, asked for once (retried as completions are).

        Raises:
            RemoteError: the server could not be reached or answered an error.
        """
        attempt = 0
        while self._served is None:
            try:
                self._served = read_served_models(self._http(), self.base_url, self._headers())
            except RemoteError as failure:
                if not self._retryable(failure, attempt):
                    raise
            attempt += 1
        return self._served

    def prompt_encoder(self, checkpoint_template: bool = False) -> PromptEncoder:
        """The encoder of the tokenizer prompts are sent with (see ``tokenizer``).

        Raises:
            ModelLoadError: the tokenizer cannot be loaded; the message says what to pass.
        """
        encoder = self._encoders.get(checkpoint_template)
        if encoder is None:  # resolved once: two first callers get the same cached encoder
            names = (self.model, self.tokenizer, self.revision)
            encoder = served_encoder(*names, checkpoint_template, self.served_models)
            self._encoders[checkpoint_template] = encoder
        return encoder

    def prompt_text(
        self, messages: Sequence[Mapping[str, str]], profile: PromptProfile = TOOLACE
    ) -> str:
        """The prompt the chat template renders; the same text the local engine renders."""
        return self.prompt_encoder().prompt_text(messages, profile)

    def prompt_ids(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        checkpoint_template: bool = False,
        profile: PromptProfile = TOOLACE,
    ) -> list[int]:
        """The prompt token ids sent to the server; the ids the local engine generates from."""
        return self.prompt_encoder(checkpoint_template).encode(messages, profile)

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """Yield text deltas as the server streams them; the last event carries the result.

        Setting ``cancel`` or closing the iterator closes the connection, which makes vLLM
        abort the request; it is noticed when the next chunk arrives. A fault before the first
        delta is retried; after it, it raises :class:`RemoteError`.
        """
        return self._events(request, cancel, live=True)

    def generate(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> GenerationResult:
        """Generate to the end (or until ``cancel`` is set) and return the result."""
        *_, last = self._events(request, cancel, live=False)
        assert last.result is not None
        return last.result

    def submit(
        self, request: GenerationRequest, cancel: threading.Event
    ) -> Future[GenerationResult]:
        """Start generating in the background; concurrent async calls (``arun_chat``) use this.

        Calls arriving together are sent together (see
        :class:`~toolace_integrations.remote.batching.RequestGatherer`), and no batch waits for
        another: the server's scheduler, not the client, decides what runs together.
        """
        with self._mine():
            if self._gatherer is None:
                self._gatherer = RequestGatherer(self.generate_batch, self.max_concurrency)
            gatherer = self._gatherer
        return gatherer.submit(request, cancel)

    def generate_batch(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event | None = None
    ) -> list[GenerationResult]:
        """Requests with equal settings go as one list-prompt request, the rest concurrently.

        ``cancel`` stops the requests sent one by one; a list-prompt request runs to its end.
        """
        return send_grouped(
            requests,
            key=lambda request: (request.sampling, self._grammar(request)),
            send_list=self._complete_list if self.batch_prompts else None,
            send_one=lambda request: self.generate(request, cancel),
            max_concurrency=self.max_concurrency,
        )

    def close(self) -> None:
        """Close pooled connections and threads; the backend reopens them when used again."""
        with self._mine():
            client, self._client = self._client, None
            gatherer, self._gatherer = self._gatherer, None
        if gatherer is not None:
            gatherer.close()
        if client is not None:
            client.close()

    def __enter__(self) -> RemoteBackend:
        """Use the backend in a ``with`` block that closes it."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close pooled connections."""
        self.close()

    def _events(
        self, request: GenerationRequest, cancel: threading.Event | None, *, live: bool
    ) -> Iterator[StreamEvent]:
        """One streamed completion with retries; ``live`` yields deltas as they come."""
        (ids,), body = self._body([request], stream=True)
        cancelled = cancel.is_set if cancel is not None else None
        attempt = 0
        while True:
            answer, shown = Answer(request.sampling.stop), False
            closer = self._closer(request)
            try:
                with self._open(body, attempt) as response:
                    for delta in answer.read(response.iter_lines(), cancelled):
                        # Where the local engine would end the answer early, stop reading.
                        end = replay(closer, answer, body["max_tokens"])
                        if live and end in (None, len(answer.token_ids)):
                            shown = True
                            yield StreamEvent(delta)
                        if end is not None:
                            break
                    replay(closer, answer, body["max_tokens"])  # tokens that came without text
                break
            except RemoteError as failure:
                if shown or not self._retryable(failure, attempt):
                    raise
            attempt += 1
        result = self._result(answer, ids, closer)
        if cancel is None or not cancel.is_set():  # a cancelled answer is cut anywhere
            self._check_grammar(request, result)
        if live:
            yield StreamEvent("" if result.closed_early else answer.flush(), result)
        else:
            yield StreamEvent(result.text, result)

    def _complete_list(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        prompts, body = self._body(requests, stream=False)
        attempt = 0
        while True:
            answers = [Answer(requests[0].sampling.stop) for _ in requests]
            try:
                with self._open(body, attempt) as response:
                    read_completion(response.read().decode("utf-8", "replace"), answers)
                break
            except RemoteError as failure:
                if not self._retryable(failure, attempt):
                    raise
            attempt += 1
        results = []
        for request, answer, ids in zip(requests, answers, prompts, strict=True):
            closer = self._closer(request)
            replay(closer, answer, body["max_tokens"])
            results.append(self._result(answer, ids, closer))
        for request, result in zip(requests, results, strict=True):
            self._check_grammar(request, result)
        return results

    def _body(
        self, requests: Sequence[GenerationRequest], *, stream: bool
    ) -> tuple[list[list[int]], dict[str, Any]]:
        """The prompt ids and the request body; ``requests`` share sampling and grammar."""
        prompts = [
            self.prompt_ids(
                r.messages, checkpoint_template=r.checkpoint_template, profile=r.profile
            )
            for r in requests
        ]
        sampling = requests[0].sampling
        max_tokens = sampling.max_new_tokens
        if self.context_window:
            longest = max(len(p) for p in prompts)
            if longest >= self.context_window:
                raise PromptTooLongError(longest, self.context_window, max_tokens)
            max_tokens = min(max_tokens, self.context_window - longest)
        grammar = self._grammar(requests[0])
        body = completion_body(
            self.model, prompts, sampling, max_tokens, stream=stream, grammar=grammar,
            token_ids=grammar is not None and forced(requests[0].grammar_choice),
        )  # fmt: skip
        body.update(self.extra_body)
        return prompts, body

    def _grammar(self, request: GenerationRequest) -> str | None:
        """The grammar text sent with ``request``; built once per request, in ``_body``.

        Without the profile's call wrappers: in a server's grammar a wrapper is text that
        ordinary tokens can spell (a random model wrote ``<|python_start|>`` byte by byte), which
        the answer check and the budget closer do not read as a wrapper.
        """
        choice = request.grammar_choice
        if choice is None or not self._sends_grammar(request):
            return None
        return tool_call_grammar(request.tools, choice)

    def _sends_grammar(self, request: GenerationRequest) -> bool:
        return request.grammar_choice is not None and self.grammar_param != "none"

    def _check_grammar(self, request: GenerationRequest, result: GenerationResult) -> None:
        """Raise when the answer breaks the grammar the request asked the server to keep."""
        cut = result.finish_reason == "length" or bool(request.sampling.stop)  # maybe mid-call
        check_grammar(
            f"{self.base_url}/completions", result.text, request,
            truncated=cut, grammar_sent=self._sends_grammar(request),
        )  # fmt: skip

    def _closer(self, request: GenerationRequest) -> BudgetCloser | None:
        """The budget closer the local engine would use, when the server keeps the grammar."""
        if not self._sends_grammar(request):
            return None
        return budget_closer(self.prompt_encoder().tokenizer, request)

    def _result(
        self, answer: Answer, ids: Sequence[int], closer: BudgetCloser | None = None
    ) -> GenerationResult:
        return completion_result(answer, ids, self.prompt_encoder().text.content_ids, closer)

    def _open(
        self, body: Mapping[str, Any], attempt: int
    ) -> AbstractContextManager[httpx.Response]:
        """POST to ``/completions`` and hold the response open (see ``open_completion``)."""
        url = f"{self.base_url}/completions"
        return open_completion(self._http(), url, body, self._headers(), attempt)

    def _retryable(self, failure: RemoteError, attempt: int) -> bool:
        if failure.retryable and attempt < self.max_retries:
            logger.warning("%s; retry %d of %d", failure, attempt + 1, self.max_retries)
            time.sleep(self.backoff * 2**attempt)
            return True
        return False

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _mine(self) -> threading.Lock:
        """The lock guarding the client and threads, all fresh in a forked child process.

        A child (gunicorn ``--preload``, Celery prefork) has none of the parent's threads, and
        sharing its sockets would mix answers, so it opens its own on first use.
        """
        if self._pid != os.getpid():
            self._lock, self._pid = threading.Lock(), os.getpid()
            self._client, self._gatherer = None, None
        return self._lock

    def _http(self) -> httpx.Client:
        with self._mine():
            if self._client is None:
                limits = httpx.Limits(max_connections=max(self.max_concurrency, 10) + 4)
                self._client = httpx.Client(timeout=self.timeout, limits=limits)
            return self._client
