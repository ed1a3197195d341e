"""The remote backend's requests: the API key, the ``/completions`` body, the POST, the result."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import httpx

from toolace_integrations.core.budget import BudgetCloser
from toolace_integrations.core.generation import FinishReason, GenerationResult, SamplingParams
from toolace_integrations.format.environment import read_text
from toolace_integrations.remote.answer import (
    MALFORMED_ADVICE,
    Answer,
    InsecureKeyWarning,
    MalformedAnswer,
    RemoteError,
    sent_in_clear,
)
from toolace_integrations.remote.models import v1_advice

__all__ = ["api_key_for", "completion_body", "completion_result", "open_completion", "replay"]


def api_key_for(base_url: str, api_key: str | None) -> str | None:
    """``api_key``, else ``TOOLACE_API_KEY``, else ``OPENAI_API_KEY``; warns if sent in clear."""
    key = api_key or read_text("TOOLACE_API_KEY") or read_text("OPENAI_API_KEY")
    if key and sent_in_clear(base_url):
        warnings.warn(
            f"The API key will be sent unencrypted to {base_url}: use https:// or a "
            "server on this machine, or unset TOOLACE_API_KEY/OPENAI_API_KEY if the server "
            "needs no key.",
            InsecureKeyWarning,
            stacklevel=3,
        )
    return key


def completion_body(
    model: str,
    prompts: Sequence[list[int]],
    sampling: SamplingParams,
    max_tokens: int,
    *,
    stream: bool,
    grammar: str | None,
    token_ids: bool = False,
) -> dict[str, Any]:
    """The ``/completions`` body for ``prompts``, which share ``sampling`` and ``grammar``.

    ``token_ids`` asks for the answer's token ids (vLLM's ``return_token_ids``).
    """
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompts[0] if len(prompts) == 1 else list(prompts),
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
    if token_ids or (not stream and len(prompts) > 1):  # usage sums the prompts
        body["return_token_ids"] = True
    if grammar is not None:
        body["structured_outputs"] = {"grammar": grammar}
    return body


@contextmanager
def open_completion(
    client: httpx.Client,
    url: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    attempt: int,
) -> Iterator[httpx.Response]:
    """POST ``body`` to ``url`` and hold the streamed response open while it is read.

    Raises:
        RemoteError: an HTTP error status, a transport error (refused, dropped connection,
            a stall past the client's timeout) or a :class:`MalformedAnswer` read inside the block.
    """
    try:
        request = client.build_request("POST", url, json=body, headers=headers)
        response = client.send(request, stream=True)
    except httpx.RequestError as error:
        raise RemoteError(url, None, repr(error), attempt + 1) from error
    try:
        if response.status_code >= 400:
            response.read()
            status = response.status_code
            advice = v1_advice(url.removesuffix("/completions")) if status == 404 else None
            raise RemoteError(url, status, response.text, attempt + 1, advice=advice)
        yield response
    except httpx.RequestError as error:
        raise RemoteError(url, None, repr(error), attempt + 1) from error
    except MalformedAnswer as error:
        raise RemoteError(
            url, response.status_code, str(error), attempt + 1,
            retryable=True, advice=MALFORMED_ADVICE,
        ) from error  # fmt: skip
    finally:
        response.close()


def completion_result(
    answer: Answer,
    ids: Sequence[int],
    tokenize: Callable[[str], Sequence[int]],
    closer: BudgetCloser | None = None,
) -> GenerationResult:
    """The result of a read ``answer`` to prompt ``ids``; ``tokenize`` counts cut answers.

    ``closer`` (fed the answer's tokens, see :meth:`~toolace_integrations.core.budget.
    BudgetCloser.replay`) gives the answer the local engine would have closed early.
    """
    usage = answer.usage
    if closer is not None and closer.answer is not None:
        prompt = usage.get("prompt_tokens")
        return GenerationResult(
            closer.answer, "length", prompt if isinstance(prompt, int) else len(ids),
            closer.fed, closed_early=True,
        )  # fmt: skip
    prompt_tokens = usage.get("prompt_tokens")
    completion_tokens = usage.get("completion_tokens")
    if not isinstance(prompt_tokens, int):
        prompt_tokens = len(ids)
    if not isinstance(completion_tokens, int) or answer.stopped:
        completion_tokens = len(tokenize(answer.text))
    finish: FinishReason = "length" if answer.finish == "length" and not answer.stopped else "stop"
    return GenerationResult(answer.text, finish, prompt_tokens, completion_tokens)


def replay(closer: BudgetCloser | None, answer: Answer, max_tokens: int) -> int | None:
    """Feed ``closer`` the answer's tokens so far; where the local engine would end it early.

    Returns how many tokens the engine would have generated when it ends the answer early,
    else ``None`` (see :meth:`~toolace_integrations.core.budget.BudgetCloser.replay`).
    """
    return None if closer is None else closer.replay(answer.token_ids, max_tokens)
