"""What the server says it serves: ``GET /models`` read once, and the tokenizer a name needs.

vLLM lists each served name (``--served-model-name``, by default the model path or id) with the
``root`` it serves and its ``max_model_len``. The client reads the list the first time it needs
the context window or a served name's tokenizer, and keeps it for the life of the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from toolace_integrations.core.encoding import PromptEncoder, cached_encoder
from toolace_integrations.core.generation import resolve_model
from toolace_integrations.errors import ModelLoadError
from toolace_integrations.remote.answer import MALFORMED_ADVICE, RemoteError

__all__ = [
    "ServedModel",
    "read_served_models",
    "served_encoder",
    "served_length",
    "served_tokenizer",
    "v1_advice",
]


@dataclass(frozen=True)
class ServedModel:
    """One entry of the server's ``/models`` list.

    Attributes:
        name: The name requests use (``model`` in the body).
        root: The checkpoint it serves (vLLM's ``--model``: a path on the server or a Hub id).
        max_model_len: The server's context length; 0 when it does not say.
    """

    name: str
    root: str | None
    max_model_len: int


_NO_MODEL_LIST = (404, 405, 501)  # not found, method not allowed, not implemented
_MODELS_ADVICE = (
    "The server did not list its models. Pass context_window=<its max model length> (and "
    "tokenizer=<the checkpoint> with a served name) to skip asking it."
)


def read_served_models(
    client: httpx.Client, base_url: str, headers: Mapping[str, str]
) -> tuple[ServedModel, ...]:
    """The models ``base_url`` serves; empty when the server has no ``/models`` (404, 405, 501).

    Raises:
        RemoteError: the server could not be reached, or answered with another error status
            or with something that is not a model list.
    """
    url = f"{base_url}/models"
    try:
        response = client.get(url, headers=headers)
    except httpx.RequestError as error:
        raise RemoteError(url, None, repr(error)) from error
    if response.status_code in _NO_MODEL_LIST:
        return ()
    if response.status_code >= 400:
        raise RemoteError(url, response.status_code, response.text, advice=_MODELS_ADVICE)
    try:
        cards = response.json()["data"]
        return tuple(_served_model(card) for card in cards)
    except (ValueError, KeyError, TypeError) as error:
        raise RemoteError(
            url, response.status_code, response.text, retryable=True, advice=MALFORMED_ADVICE
        ) from error


def _served_model(card: Mapping[str, Any]) -> ServedModel:
    length = card.get("max_model_len")
    root = card.get("root")
    return ServedModel(
        name=str(card["id"]),
        root=root if isinstance(root, str) and root else None,
        max_model_len=length if isinstance(length, int) and length > 0 else 0,
    )


def served_length(served: Sequence[ServedModel], model: str) -> int:
    """``model``'s ``max_model_len``; 0 when the server does not list it or does not say.

    ``/models`` lists only the first of several ``--served-model-name`` aliases: another alias,
    or the checkpoint's own path, is found by the ``root`` it serves.
    """
    named = [m for m in served if m.name == model]
    entry = next(iter(named or [m for m in served if m.root == model]), None)
    return entry.max_model_len if entry is not None else 0


def served_encoder(
    model: str,
    tokenizer: str | None,
    revision: str | None,
    checkpoint_template: bool,
    served: Callable[[], Sequence[ServedModel]],
) -> PromptEncoder:
    """The encoder of ``tokenizer``, else of the checkpoint behind ``model`` (see below).

    Raises:
        ModelLoadError: the tokenizer cannot be loaded; the message says what to pass.
    """
    name = tokenizer or served_tokenizer(model, served)
    try:
        return cached_encoder(name, revision, checkpoint_template)
    except ModelLoadError as error:
        if tokenizer is not None:
            raise
        raise ModelLoadError(
            f"{error} If {model!r} is the name the server gives the model "
            "(--served-model-name), pass tokenizer= its checkpoint's Hub id or folder."
        ) from error


def served_tokenizer(model: str, served: Callable[[], Sequence[ServedModel]]) -> str:
    """Where to load ``model``'s tokenizer from when no ``tokenizer`` was given.

    A folder on this machine is used as it is. Otherwise the server is asked (``served``): a
    served name loads the tokenizer of the ``root`` it serves, when that is a Hub id or a folder
    here too. Anything else is loaded as the Hub id it looks like.

    Raises:
        ModelLoadError: the server serves ``model`` from a folder this machine does not have;
            the message names the ``tokenizer=`` to pass.
    """
    if Path(model).expanduser().exists():
        return model
    try:
        entry = next((m for m in served() if m.name == model), None)
    except RemoteError:
        return model  # no answer about names: the tokenizer may still load as a Hub id
    if entry is None or entry.root is None or entry.root == model:
        return model
    try:
        return resolve_model(entry.root)
    except ModelLoadError as error:
        raise ModelLoadError(
            f"The server serves {model!r} from {entry.root!r}, which is not on this machine. "
            f"Pass tokenizer= a copy of that checkpoint's tokenizer: its Hub id (e.g. "
            f"tokenizer='Team-ACE/ToolACE-8B') or a local folder with its tokenizer files."
        ) from error


def v1_advice(base_url: str) -> str | None:
    """Advice for a 404 from ``base_url`` when it lacks the ``/v1`` the OpenAI API lives under."""
    if base_url.rstrip("/").endswith("/v1"):
        return None
    return (
        f"base_url={base_url!r} does not end in /v1, where vLLM serves the OpenAI API: "
        f"use base_url={base_url.rstrip('/') + '/v1'!r}."
    )
