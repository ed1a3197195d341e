"""Backend-neutral generation records, the backend protocol, and choosing a backend.

Nothing here imports torch: the adapters and the remote backend depend on these records and on
:func:`connect`, which loads the local transformers engine or reaches a server only when asked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from toolace_integrations.tools import FunctionSpec, ToolChoice

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides which weights are loaded and how; the key of the model cache.

    ``dtype=None`` means bfloat16 on CUDA and float32 elsewhere; ``device_map=None`` means
    ``"auto"`` (spread over the GPUs) when CUDA is available, else the CPU.
    """

    model: str = "Team-ACE/ToolACE-8B"
    revision: str | None = None
    dtype: str | None = None
    device_map: str | Mapping[str, Any] | None = None
    attn_implementation: str | None = None
    quantization_config: Any = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def cache_key(self) -> str:
        """A stable text key; configs without JSON form contribute their ``repr``."""
        quantization = self.quantization_config
        if hasattr(quantization, "to_dict"):
            quantization = quantization.to_dict()
        fields = [self.model, self.revision, self.dtype, self.device_map, self.attn_implementation]
        key: str = json.dumps(
            [*fields, quantization, self.model_kwargs], sort_keys=True, default=repr
        )
        return key


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; ``temperature=None`` or ``0`` means greedy.

    ``cache_implementation="static"`` gives transformers a fixed-size key/value cache, with which
    it compiles the decoding step with ``torch.compile`` on GPU; prompt-prefix reuse is then off.
    ``reuse_prefix=False`` neither reuses nor keeps key/value caches of earlier prompts.
    """

    max_new_tokens: int = 512
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    cache_implementation: str | None = None
    reuse_prefix: bool = True


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete.

    Attributes:
        messages: Role/content messages from :func:`~toolace_integrations.prompt.render_messages`.
        sampling: Decoding settings.
        tools: The bound tools.
        tool_choice: What the model may answer with; ``None`` means text only (no tools).
        constrained: Enforce ``tool_choice`` over ``tools`` with the tool-call grammar.
    """

    messages: tuple[Mapping[str, str], ...]
    sampling: SamplingParams = SamplingParams()
    tools: tuple[FunctionSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    constrained: bool = False

    @property
    def grammar_choice(self) -> ToolChoice | None:
        """The choice the grammar must enforce, or ``None`` for free decoding."""
        return self.tool_choice if self.constrained else None


@dataclass(frozen=True)
class GenerationResult:
    """What one generation produced."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    closed_early: bool = False  # the budget ran short and the engine closed the forced calls


@dataclass(frozen=True)
class StreamEvent:
    """A piece of a stream: a text delta, and on the last event the whole result."""

    delta: str
    result: GenerationResult | None = None


class Backend(Protocol):
    """What adapters need from an engine; the local and remote backends both provide it."""

    @property
    def model_name(self) -> str:
        """The model id or path."""

    @property
    def context_window(self) -> int:
        """Tokens the model can attend to (0 when unknown)."""

    def stream(
        self, request: GenerationRequest, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """Text deltas, then a last event carrying the result."""

    def generate_batch(
        self, requests: Sequence[GenerationRequest], cancel: threading.Event | None = None
    ) -> list[GenerationResult]:
        """Several requests at once; ``cancel`` stops them early where the backend can."""

    def prompt_text(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The full prompt text the model sees for ``messages``."""


def connect(
    model: str,
    *,
    revision: str | None = None,
    dtype: str | None = None,
    device_map: str | Mapping[str, Any] | None = None,
    attn_implementation: str | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> Backend:
    """The backend adapters generate with; the one place their settings become a backend.

    Without ``base_url`` this is the process-wide local engine for the checkpoint, loaded on
    first use and shared by every adapter with the same settings. With ``base_url`` it is a
    client of that OpenAI-compatible server (vLLM), rendering and parsing prompts locally.
    ``model_kwargs`` go to ``from_pretrained``; a ``quantization_config`` among them is part of
    what makes two loaded models differ.
    """
    options = dict(model_kwargs or {})
    spec = ModelSpec(
        model=model,
        revision=revision,
        dtype=dtype,
        device_map=device_map,
        attn_implementation=attn_implementation,
        quantization_config=options.pop("quantization_config", None),
        model_kwargs=options,
    )
    if base_url is None:
        from toolace_integrations.engine import load_engine

        return load_engine(spec)
    from toolace_integrations.remote import RemoteBackend

    remote: dict[str, Any] = {"revision": revision, "api_key": api_key}
    if timeout is not None:
        remote["timeout"] = timeout
    if max_retries is not None:
        remote["max_retries"] = max_retries
    return RemoteBackend(base_url, model, **remote)
