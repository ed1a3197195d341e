"""The remote backend's wire: reading completion answers, checking them, its errors.

:class:`Answer` takes server-sent-event lines or whole completion objects, validates their shape
(a proxy's HTML page, a truncated stream or a malformed chunk is a :class:`MalformedAnswer`, never
an empty answer) and cuts the text at the first stop string. :func:`grammar_violation` tells
whether an answer could have come out of the tool-call grammar: a server that ignored the
grammar must not pass off unconstrained text as a forced call. :func:`sent_in_clear` tells
whether a request would carry an API key unencrypted to another machine.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from toolace_integrations.core.generation import GenerationRequest
from toolace_integrations.errors import ToolACEError
from toolace_integrations.format.grammar_text import text_answer_problem
from toolace_integrations.format.parsing import parse_tool_calls
from toolace_integrations.format.stops import StopScanner
from toolace_integrations.format.tools import ToolChoice

__all__ = [
    "Answer",
    "GrammarNotEnforcedError",
    "InsecureKeyWarning",
    "MalformedAnswer",
    "RemoteConfigError",
    "RemoteError",
    "check_grammar",
    "grammar_violation",
    "read_completion",
    "sent_in_clear",
]

_SSE_FIELDS = ("data:", "event:", "id:", "retry:")
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MALFORMED_ADVICE = (
    "The answer is not an OpenAI completion: check that base_url points at the server "
    "itself (not a proxy's error page) and ends in /v1."
)


class RemoteError(ToolACEError, RuntimeError):
    """The server could not be reached, answered with an error, or sent a malformed answer.

    Attributes:
        url: The endpoint called.
        status: The HTTP status, or ``None`` when no answer came (connection error, timeout).
        body: The server's answer (or the transport error's text), for the log.
        retryable: Whether the same request may succeed when sent again.
    """

    def __init__(
        self,
        url: str,
        status: int | None,
        body: str,
        attempts: int = 1,
        *,
        retryable: bool | None = None,
        advice: str | None = None,
    ) -> None:
        self.url, self.status, self.body = url, status, body
        self.retryable = status is None or status in _RETRY_STATUS
        if retryable is not None:
            self.retryable = retryable
        what = f"answered HTTP {status}" if status is not None else "could not be reached"
        if advice is None:
            advice = (
                "Check that the server runs and base_url ends in /v1 (e.g. http://host:8000/v1)."
                if self.retryable
                else "Check `model` (the served model name) and, for servers without structured "
                "outputs, set grammar_param='none'."
            )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{url} {what}{tries}: {body[:1000]} {advice}")


class GrammarNotEnforcedError(RemoteError):
    """The server's answer breaks the tool-call grammar: it ignored or lacks structured outputs."""


class RemoteConfigError(ToolACEError, ValueError):
    """A remote backend setting that cannot work."""


class InsecureKeyWarning(UserWarning):
    """An API key is about to be sent unencrypted over plain HTTP to another machine."""


class MalformedAnswer(ValueError):
    """The server's answer is not an OpenAI completion (or stream of them)."""


class Answer:
    """One completion's text as chunks arrive, cut at the first stop string.

    Attributes:
        text: The text so far (cut at a stop string once one appears).
        finish: The server's ``finish_reason`` once it came.
        usage: The server's usage counts, when it sent them.
        stopped: A stop string was found here (the server did not cut it itself).
        done: Nothing more is to be read.
        token_ids: The answer's token ids, when the server sends them (``return_token_ids``).
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._scanner = StopScanner(stop)
        self.finish: str | None = None
        self.usage: dict[str, Any] = {}
        self.stopped = False
        self.done = False
        self.token_ids: list[int] = []

    def feed_line(self, line: str) -> str:
        """Take one SSE line; returns the text that may be shown now.

        Raises:
            MalformedAnswer: the line is not server-sent-event syntax or its data is malformed.
        """
        if not line or line.startswith(":"):
            return ""
        if not line.startswith(_SSE_FIELDS):
            raise MalformedAnswer(f"not a server-sent event: {line[:200]!r}")
        if not line.startswith("data:"):
            return ""
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(data)
        except ValueError as error:
            raise MalformedAnswer(f"a chunk is not JSON ({error}): {data[:200]!r}") from error
        return self.feed(chunk)

    def feed(self, chunk: Any) -> str:
        """Take one completion object or stream chunk; returns the text that may be shown now.

        Raises:
            MalformedAnswer: the chunk is an error or lacks the completion fields.
        """
        if not isinstance(chunk, Mapping):
            raise MalformedAnswer(f"a chunk is not a JSON object: {str(chunk)[:200]!r}")
        if "error" in chunk:
            raise MalformedAnswer(f"the server reported an error: {str(chunk['error'])[:500]}")
        usage, choices = chunk.get("usage"), chunk.get("choices", [])
        if usage is not None and not isinstance(usage, Mapping):
            raise MalformedAnswer(f"usage is not an object: {str(usage)[:200]!r}")
        if not isinstance(choices, list) or not all(isinstance(c, Mapping) for c in choices):
            raise MalformedAnswer(f"choices is not a list of objects: {str(choices)[:200]!r}")
        if usage:
            self.usage = dict(usage)
        delta = ""
        for choice in choices:
            text, finish = choice.get("text") or "", choice.get("finish_reason")
            if not isinstance(text, str) or not isinstance(finish, (str, type(None))):
                raise MalformedAnswer(f"a choice has no text: {str(choice)[:200]!r}")
            self.finish = finish or self.finish
            if isinstance(tokens := choice.get("token_ids"), list):
                self.token_ids += tokens
            delta += self._scanner.feed(text)
        if self._scanner.stopped:
            self.stopped = self.done = True
        return delta

    def read(
        self, lines: Iterable[str], cancelled: Callable[[], bool] | None = None
    ) -> Iterator[str]:
        """Feed SSE ``lines`` until the stream ends; yields the text that may be shown.

        Raises:
            MalformedAnswer: a bad line, or the stream ended before the answer finished.
        """
        for line in lines:
            if cancelled is not None and cancelled():
                self.done = True
                return
            if delta := self.feed_line(line):
                yield delta
            if self.done:
                return
        if self.finish is None:
            raise MalformedAnswer("the stream ended before the answer finished (no [DONE])")

    @property
    def text(self) -> str:
        """The answer so far, cut at a stop string once one appears."""
        return self._scanner.text + self._scanner.held

    def flush(self) -> str:
        """The text not yet shown."""
        return self._scanner.flush()


def read_completion(text: str, answers: Sequence[Answer]) -> None:
    """Read a non-streamed completion of ``len(answers)`` prompts into ``answers``.

    Raises:
        MalformedAnswer: ``text`` is not a completion with one finished choice per prompt.
    """
    try:
        choices = json.loads(text)["choices"]
        by_index = {choice.get("index", 0): choice for choice in choices}
    except (ValueError, KeyError, AttributeError, TypeError) as error:
        raise MalformedAnswer(f"not a completion ({error!r}): {text[:300]!r}") from error
    if sorted(by_index) != list(range(len(answers))):
        raise MalformedAnswer(f"{len(choices)} choices for {len(answers)} prompts")
    for index, answer in enumerate(answers):
        answer.feed({"choices": [by_index[index]]})  # usage counts all prompts together
        if answer.token_ids:  # vLLM's own count
            answer.usage = {"completion_tokens": len(answer.token_ids)}
        answer.flush()
        if answer.finish is None:
            raise MalformedAnswer(f"choice {index} has no finish_reason: {text[:300]!r}")


def check_grammar(
    url: str, text: str, request: GenerationRequest, *, truncated: bool, grammar_sent: bool
) -> None:
    """Raise when ``text`` breaks the grammar ``request`` asked for (see :func:`grammar_violation`).

    Raises:
        GrammarNotEnforcedError: naming why, and what to change on the server or the client.
    """
    why = grammar_violation(text, request, truncated=truncated, grammar_sent=grammar_sent)
    if why is None:
        return
    advice = (
        "The server ignored the tool-call grammar: use vLLM >= 0.10.2 with structured "
        "outputs enabled (its default xgrammar backend)."
        if grammar_sent
        else "grammar_param='none' sends no grammar, so the server cannot force a call; "
        "use grammar_param='structured_outputs' with vLLM, or constrained_decoding=False."
    )
    raise GrammarNotEnforcedError(
        url, 200, f"the answer {text[:300]!r}: {why}.", retryable=False, advice=advice
    )


def sent_in_clear(url: str) -> bool:
    """Whether ``url`` is plain HTTP to a host other than this machine."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def grammar_violation(
    text: str, request: GenerationRequest, *, truncated: bool, grammar_sent: bool
) -> str | None:
    """Why ``text`` cannot have come out of the request's tool-call grammar, or ``None``.

    Forced calls (``required``, a named tool) are always checked; with ``grammar_sent``, so are
    the answers of ``auto``/``none``. ``truncated`` answers need only be a prefix of one the
    grammar accepts. The text branch is read by
    :func:`~toolace_integrations.format.grammar_text.text_answer_problem`, made from the grammar's
    own definition. A call list is checked for its shape: a list of calls of the allowed tools,
    nothing after it; its values are the parser's to judge (a value the grammar lets through but
    the schema refuses, such as a number under ``minimum``, is an invalid call, not a server
    that ignored the grammar).
    """
    choice = request.grammar_choice
    if choice is None:
        return None
    forced = choice.mode in ("required", "named")
    if forced or (grammar_sent and choice.mode == "auto" and text.startswith("[")):
        return _call_list_problem(text, request, choice, truncated=truncated)
    if not grammar_sent:
        return None
    return text_answer_problem(text, complete=not truncated)


def _call_list_problem(
    text: str, request: GenerationRequest, choice: ToolChoice, *, truncated: bool
) -> str | None:
    """Why ``text`` is not (a prefix of, when ``truncated``) a call list ``choice`` allows."""
    names = [t.name for t in request.tools if choice.mode != "named" or t.name == choice.name]
    if truncated:
        after = text[1:]
        prefix = text.startswith("[") and any(
            after.startswith(f"{n}(") or f"{n}(".startswith(after) for n in names
        )
        return None if prefix or not text else "it does not start a call of the allowed tool(s)"
    parsed = parse_tool_calls(text)  # shape only: the grammar does not enforce every schema rule
    if parsed.invalid or parsed.content or not parsed.calls or not text.startswith("["):
        return "it is not a valid call list of the bound tools"
    if any(call.name not in names for call in parsed.calls):
        allowed = repr(choice.name) if choice.mode == "named" else f"the bound tools {names}"
        return f"it calls a tool other than {allowed}"
    if not choice.parallel and len(parsed.calls) > 1:
        return "it has several calls where parallel_tool_calls=False allows one"
    return None
