"""The chat model's LangChain profile, whose ``max_input_tokens`` a server tells when first read.

LangChain sets ``profile`` while the model is constructed, which must stay cheap and offline.
For a model on a server the context length is the server's ``max_model_len``, so
:class:`ServerProfile` asks for it only when ``max_input_tokens`` is read (the summarization
middleware reads it with ``profile.get``); the backend keeps the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from langchain_core.language_models import ModelProfile

__all__ = ["ServerProfile"]

_WINDOW_KEY = "max_input_tokens"


class ServerProfile(Mapping[str, Any]):
    """Fixed capabilities, plus ``max_input_tokens`` from ``window()`` when first read.

    Args:
        capabilities: The keys known without asking the server.
        window: The context length, asked for on each read (the backend caches it); ``None``
            when the server does not say, and the key is then absent.
    """

    def __init__(self, capabilities: ModelProfile, window: Callable[[], int | None]) -> None:
        self._capabilities: dict[str, Any] = dict(capabilities)
        self._window = window

    def __getitem__(self, key: str) -> Any:
        """A capability, or the server's context length for ``max_input_tokens``."""
        if key == _WINDOW_KEY:
            window = self._window()
            if window is None:
                raise KeyError(key)
            return window
        return self._capabilities[key]

    def __iter__(self) -> Iterator[str]:
        """The capabilities' keys, then ``max_input_tokens`` when the server tells it."""
        yield from self._capabilities
        if self._window() is not None:
            yield _WINDOW_KEY

    def __bool__(self) -> bool:
        """True without asking the server (LangChain tests the profile while constructing)."""
        return True

    def __len__(self) -> int:
        """How many keys there are (asks the server, as iterating does)."""
        return sum(1 for _ in self)

    def __deepcopy__(self, memo: dict[int, Any]) -> ServerProfile:
        """Itself: it reads the same model, which a deep copy would otherwise copy too."""
        return self

    def __repr__(self) -> str:
        """The capabilities; the context length is not asked for."""
        return f"ServerProfile({self._capabilities!r}, max_input_tokens read from the server)"
