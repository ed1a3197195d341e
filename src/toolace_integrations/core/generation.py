"""Backend-neutral generation records and the backend protocol: the bottom layer.

Nothing here imports torch or another backend module: both backends and the adapters depend on
these records; choosing a backend for a set of settings lives above, in
:mod:`toolace_integrations.backends`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from toolace_integrations.errors import ModelLoadError
from toolace_integrations.format.profiles import TOOLACE, PromptProfile
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

FinishReason = Literal["stop", "length"]
_HUB_ID = re.compile(r"[\w][\w.-]*(/[\w][\w.-]*)?")


def resolve_model(model: str) -> str:
    """A local folder as its absolute, resolved path; a Hugging Face Hub id unchanged.

    Raises:
        ModelLoadError: ``model`` looks like a path (``./x``, ``/x``, ``x/``, ``a/b/c``) but no
            such file or folder exists, before transformers is asked.
    """
    path = Path(model).expanduser()
    if path.exists():
        return str(path.resolve())
    if _HUB_ID.fullmatch(model) and ".." not in model:
        return model
    raise ModelLoadError(
        f"There is no folder {model!r} (looked for {path.resolve()}), and it is not a Hugging "
        "Face Hub id of the form 'owner/name'. Pass the folder that holds config.json and the "
        "weights, or a Hub id such as 'Team-ACE/ToolACE-8B' (downloaded once, it loads "
        "offline with HF_HUB_OFFLINE=1)."
    )


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

    def normalized(self, *, cuda: bool) -> ModelSpec:
        """The spec with what the engine would pick filled in, so equal weights key equally.

        A local folder becomes its resolved path; ``dtype`` defaults to bfloat16 on CUDA and
        float32 elsewhere, ``device_map`` to ``"auto"`` on CUDA; ``attn_implementation="sdpa"``
        (transformers' default) is left unset.
        """
        dtype = str(self.dtype).removeprefix("torch.") if self.dtype is not None else None
        device_map = self.device_map
        return replace(
            self,
            model=resolve_model(self.model),
            dtype=dtype or ("bfloat16" if cuda else "float32"),
            device_map=device_map if device_map is not None else ("auto" if cuda else None),
            attn_implementation=None
            if self.attn_implementation == "sdpa"
            else self.attn_implementation,
        )

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
        messages: Role/content messages from
        :func:`~toolace_integrations.format.prompt.render_messages`. sampling: Decoding settings.
        tools: The bound tools.
        tool_choice: What the model may answer with; ``None`` means text only (no tools).
        constrained: Enforce ``tool_choice`` over ``tools`` with the tool-call grammar.
        checkpoint_template: Encode with the checkpoint's own chat template instead of the
            profile's layout (see :class:`~toolace_integrations.core.encoding.PromptEncoder`).
        profile: The checkpoint's prompt profile: the layout the messages are encoded in, the
            call wrappers the grammar allows.
    """

    messages: tuple[Mapping[str, str], ...]
    sampling: SamplingParams = SamplingParams()
    tools: tuple[FunctionSpec, ...] = ()
    tool_choice: ToolChoice | None = None
    constrained: bool = False
    checkpoint_template: bool = False
    profile: PromptProfile = TOOLACE

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
    closed_early: bool = False  # ended early near the budget, honestly (see core.budget)


@dataclass(frozen=True)
class StreamEvent:
    """A piece of a stream: a text delta, and on the last event the whole result."""

    delta: str
    result: GenerationResult | None = None


class EveryoneLeft(threading.Event):
    """A batch's cancel flag: set once every caller in it has cancelled."""

    def __init__(self, callers: Sequence[threading.Event]) -> None:
        super().__init__()
        self._callers = callers

    def is_set(self) -> bool:
        """Whether every caller has cancelled."""
        return all(caller.is_set() for caller in self._callers)


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
