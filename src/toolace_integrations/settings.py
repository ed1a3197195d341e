"""One settings base for both adapters: every field once, call arguments, the cached backend.

``ChatToolACE`` (LangChain) and ``ToolACELLM`` (LlamaIndex) both mix in :class:`ToolACESettings`,
as langchain-openai's ``ChatOpenAI`` and ``AzureChatOpenAI`` share ``BaseChatOpenAI``: a new
setting is one field here, and the two adapters cannot drift apart.
"""

from __future__ import annotations

import difflib
import functools
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)
from typing_extensions import Self

from toolace_integrations.arguments import ToolACEArguments
from toolace_integrations.backends import (
    attach,
    checkpoint_context_window,
    connect,
    prompt_encoder,
    release,
    require_local_grammar,
    server_encoder,
)
from toolace_integrations.core.chat import build_request
from toolace_integrations.core.encoding import PromptEncoder
from toolace_integrations.core.generation import Backend, GenerationRequest, SamplingParams
from toolace_integrations.errors import InvalidSettingError, UnknownArgumentError
from toolace_integrations.format.environment import read_text
from toolace_integrations.format.profiles import (
    PROMPT_PROFILES,
    PromptFormat,
    PromptProfile,
    detect_profile,
    named_profile,
)
from toolace_integrations.format.prompt import Message, PromptError
from toolace_integrations.format.tools import FunctionSpec, resolve_tool_choice

__all__ = ["ToolACEArguments", "ToolACESettings"]

_API_KEY_ENV = ("TOOLACE_API_KEY", "OPENAI_API_KEY")
_CALL_SAMPLING = (
    "max_new_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "cache_implementation",
    "reuse_prefix",
)
# Settings that never change an answer, left out of LLM-cache keys (the key is secret too).
_ANSWER_NEUTRAL = frozenset({"api_key", "timeout", "max_retries", "max_concurrency"})


def _api_key_from_env() -> SecretStr | None:
    value = next(filter(None, map(read_text, _API_KEY_ENV)), None)
    return SecretStr(value) if value else None


class _BackendSlot:
    """An adapter's connected backends; copies of the adapter share it, never copying a model.

    Pickling keeps none of it (models and connections do not travel between processes).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.backends: dict[str, Backend] = {}

    def __copy__(self) -> _BackendSlot:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _BackendSlot:
        return self

    def __reduce__(self) -> tuple[type[_BackendSlot], tuple[()]]:
        return _BackendSlot, ()  # a pickled adapter loads its model again when used


class ToolACESettings(BaseModel):
    """The settings both adapters share, with the spellings users of each framework expect.

    Unknown constructor arguments raise :class:`UnknownArgumentError` naming the closest field.
    """

    model: str = Field(
        default="Team-ACE/ToolACE-8B",
        validation_alias=AliasChoices("model", "model_name"),
        description="Hugging Face model id or local folder (alias model_name).",
    )
    revision: str | None = Field(default=None, description="Hub branch, tag or commit to load.")
    tokenizer: str | None = Field(
        default=None,
        description="With base_url: the tokenizer's Hub id or folder, so model can be the served "
        "name; None: model's, or the checkpoint the server lists for it.",
    )
    dtype: str | None = Field(
        default=None,
        validation_alias=AliasChoices("dtype", "torch_dtype"),
        description="Weight dtype such as 'bfloat16' (alias torch_dtype); None: bfloat16 on "
        "CUDA, float32 on CPU.",
    )
    device_map: str | dict[str, Any] | None = Field(
        default=None, description="transformers device_map ('auto', 'cuda:0'); None: CPU."
    )
    attn_implementation: str | None = Field(
        default=None, description="Attention kernel, e.g. 'sdpa' (the default) or 'eager'."
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra from_pretrained arguments, e.g. {'quantization_config': ...}.",
    )
    max_new_tokens: int = Field(
        default=512,
        ge=1,
        alias="max_tokens",
        validation_alias=AliasChoices("max_new_tokens", "max_tokens"),
        description="Most tokens to generate per turn (alias max_tokens).",
    )
    temperature: float | None = Field(
        default=None, ge=0, description="Sampling temperature; None or 0 decodes greedily."
    )
    top_p: float | None = Field(default=None, gt=0, le=1, description="Nucleus sampling mass.")
    stop: list[str] | None = Field(default=None, description="Strings that end generation.")
    seed: int | None = Field(default=None, description="Seed for sampling, for repeatable runs.")
    cache_implementation: str | None = Field(
        default=None,
        description="'static' for a fixed-size KV cache, which transformers compiles with "
        "torch.compile on GPU (turns off prompt-prefix reuse); None for the dynamic cache.",
    )
    reuse_prefix: bool = Field(
        default=True,
        description="Reuse the key/value cache of earlier prompts that share a prefix (agent "
        "steps re-send the same tools); bounded by TOOLACE_PREFIX_CACHE_ENTRIES/_BYTES.",
    )
    prompt_format: PromptFormat = Field(
        default="auto",
        description="The checkpoint family's prompt: 'toolace' (ToolACE-8B), 'bfcl' (ToolACE-2-8B, "
        "watt-tool, Llama-3.1/3.3 as BFCL scores them), 'llama3.2', 'llama4'; 'auto' reads the "
        "checkpoint's name and tokenizer.",
    )
    system_template: str | None = Field(
        default=None,
        description="A system prompt replacing the profile's; '{functions}' is replaced by the "
        "tool list.",
    )
    constrained_decoding: bool = Field(
        default=True, description="Constrain output to valid calls of bound tools (xgrammar)."
    )
    use_checkpoint_template: bool = Field(
        default=False,
        description="Render prompts with the checkpoint's own chat template instead of the "
        "layout BFCL scored ToolACE-8B with; content spelling special tokens is refused.",
    )
    context_window: int | None = Field(
        default=None,
        gt=0,
        description="Context size; None reads the checkpoint's config.json (or the server's).",
    )
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("base_url", "api_base"),
        description="OpenAI-compatible server (vLLM) to generate on, e.g. http://host:8000/v1; "
        "None runs the model in this process.",
    )
    timeout: float | None = Field(
        default=None,
        validation_alias=AliasChoices("timeout", "request_timeout"),
        description="Seconds per server request.",
    )
    max_retries: int | None = Field(
        default=None, description="Retries of failed server requests (connection, 429, 5xx)."
    )
    api_key: SecretStr | None = Field(
        default_factory=_api_key_from_env,
        exclude=True,  # never serialized; a loaded copy reads the environment again
        description="Server API key; read from TOOLACE_API_KEY or OPENAI_API_KEY when unset.",
    )
    grammar_param: Literal["structured_outputs", "none"] | None = Field(
        default=None,
        description="How the server gets the tool-call grammar; None: structured_outputs.",
    )
    extra_body: dict[str, Any] | None = Field(
        default=None, description="More fields for every server request, e.g. {'top_k': 20}."
    )
    batch_prompts: bool | None = Field(
        default=None, description="Send a batch to the server as one list prompt (default)."
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Server requests in flight at once for a batch."
    )

    _slot: _BackendSlot = PrivateAttr(default_factory=_BackendSlot)

    _ACCEPTED_ARGUMENTS: ClassVar[frozenset[str]] = frozenset()
    """Constructor arguments of the framework's neighbours accepted without a field."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_arguments(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        known = _field_names(cls)
        unknown = [name for name in data if name not in known]
        if unknown:
            raise UnknownArgumentError(_unknown_message(cls.__name__, "argument", unknown, known))
        return {key: value for key, value in data.items() if key not in cls._ACCEPTED_ARGUMENTS}

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop_string(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def load(self) -> Self:
        """Load the tokenizer and weights (or reach the server) now; returns ``self``."""
        self._backend()
        return self

    def unload(self) -> None:
        """Let go of the loaded model; its memory is freed once no other ToolACE object uses it.

        The next call loads it again.
        """
        slot = self._slot
        with slot.lock:
            backends, slot.backends = list(slot.backends.values()), {}
        for backend in backends:
            release(backend, slot)

    def _backend(self, model: str | None = None) -> Backend:
        """The backend for these settings (a call may name another ``model``), cached."""
        options = self._connect_options(model)
        key = repr(sorted(options.items()))
        slot = self._slot
        with slot.lock:
            if key not in slot.backends:
                slot.backends[key] = backend = connect(**options)
                attach(backend, slot)
            return slot.backends[key]

    def _backend_key(self, model: str | None = None) -> str:
        """Which of the slot's backends these settings use (as :meth:`_backend` keys them)."""
        return repr(sorted(self._connect_options(model).items()))

    def _connect_options(self, model: str | None = None) -> dict[str, Any]:
        return {
            "model": model or self.model,
            "revision": self.revision,
            "dtype": self.dtype,
            "device_map": self.device_map,
            "attn_implementation": self.attn_implementation,
            "model_kwargs": self.model_kwargs,
            "base_url": self.base_url,
            "tokenizer": self.tokenizer,
            "api_key": self.api_key.get_secret_value() if self.api_key else None,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "grammar_param": self.grammar_param,
            "extra_body": self.extra_body,
            "batch_prompts": self.batch_prompts,
            "max_concurrency": self.max_concurrency,
            "context_window": self.context_window,
        }

    def _require_grammar(self, tools: Collection[Any]) -> None:
        """Fail now if binding ``tools`` here will need xgrammar and it is not installed.

        Raises:
            GrammarUnavailableError: tools, ``constrained_decoding`` on, a local model (a
                server constrains on its side) and no xgrammar.
        """
        if tools and self.constrained_decoding and self.base_url is None:
            require_local_grammar()

    def _encoder(self) -> PromptEncoder:
        """The checkpoint's tokenizer alone, for prompt text and token counts without weights."""
        if self.base_url:
            return server_encoder(self._backend(), checkpoint_template=self.use_checkpoint_template)
        return prompt_encoder(
            self.model, self.revision, checkpoint_template=self.use_checkpoint_template
        )

    def _context_size(self) -> int | None:
        """Tokens the model attends to: the setting, the server's, a loaded model's, config.json's.

        Raises:
            RemoteError: the server could not be asked for its ``max_model_len``.
        """
        if self.context_window:
            return self.context_window
        if self.base_url:
            return self._backend().context_window or None  # asked once per backend
        slot = (self.__pydantic_private__ or {}).get("_slot")
        loaded = slot.backends.get(self._backend_key()) if isinstance(slot, _BackendSlot) else None
        if loaded is not None and loaded.context_window:
            return loaded.context_window
        return checkpoint_context_window(self.model, self.revision)

    def _answer_settings(self) -> dict[str, Any]:
        """Every setting that can change an answer: what an LLM-cache key must hold."""
        names = set(ToolACESettings.model_fields) - _ANSWER_NEUTRAL
        return self.model_dump(include=names)

    def _sampling(
        self, options: dict[str, Any], stop: str | Sequence[str] | None = None
    ) -> SamplingParams:
        """Pop the per-call sampling arguments from ``options`` over the fields' values.

        Raises:
            InvalidSettingError: a value generation cannot use, before any model work.
        """
        for name in ("max_new_tokens", "max_tokens", "temperature", "top_p"):
            if name in options and options[name] is None:
                del options[name]  # None means the model's setting
        max_new_tokens = options.pop("max_new_tokens", self.max_new_tokens)
        max_new_tokens = options.pop("max_tokens", max_new_tokens)
        temperature = options.pop("temperature", self.temperature)
        top_p = options.pop("top_p", self.top_p)
        stop = options.pop("stop", None) if stop is None else stop
        if stop is None:
            stop = self.stop or ()
        if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool):
            raise InvalidSettingError(f"max_tokens={max_new_tokens!r} must be an integer >= 1.")
        if max_new_tokens < 1:
            raise InvalidSettingError(f"max_tokens={max_new_tokens} must be at least 1.")
        if temperature is not None and not (_number(temperature) and temperature >= 0):
            raise InvalidSettingError(
                f"temperature={temperature!r} must be a number >= 0 (0 or None decodes greedily)."
            )
        if top_p is not None and not (_number(top_p) and 0 < top_p <= 1):
            raise InvalidSettingError(f"top_p={top_p!r} must be in (0, 1].")
        return SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=(stop,) if isinstance(stop, str) else tuple(stop),
            seed=options.pop("seed", self.seed),
            cache_implementation=options.pop("cache_implementation", self.cache_implementation),
            reuse_prefix=options.pop("reuse_prefix", self.reuse_prefix),
        )

    def _core_request(
        self,
        messages: Sequence[Message],
        tools: Sequence[FunctionSpec],
        choice: Any,
        *,
        parallel: bool,
        options: dict[str, Any],
        stop: str | Sequence[str] | None = None,
    ) -> GenerationRequest:
        """The request for converted messages and tools; ``options`` left are sampling or wrong.

        Raises:
            UnknownArgumentError: a call argument neither the adapter nor sampling knows.
            InvalidSettingError: a sampling value generation cannot use.
        """
        sampling = self._sampling(options, stop)
        self._refuse_call_arguments(options)
        return build_request(
            messages,
            tools,
            tool_choice=resolve_tool_choice(choice, tools, parallel=parallel),
            sampling=sampling,
            system_template=self.system_template,
            constrained=self.constrained_decoding,
            checkpoint_template=self.use_checkpoint_template,
            profile=self.prompt_profile(),
        )

    def prompt_profile(self) -> PromptProfile:
        """The prompt profile in use: ``prompt_format``'s, else the checkpoint's.

        The family is read from the checkpoint's name (on a server: the checkpoint it serves,
        then the served name), else from its tokenizer (see
        :func:`~toolace_integrations.format.profiles.detect_profile`).

        Raises:
            ModelLoadError: the tokenizer is needed and cannot be loaded.
        """
        if self.prompt_format != "auto":
            return PROMPT_PROFILES[self.prompt_format]
        if not self.base_url:
            return _local_profile(self.model, self.revision)
        encoder = self._encoder()  # on a server: its checkpoint names the family, not an alias
        names = [encoder.tokenizer.name_or_path, self.model]
        return detect_profile(names, encoder.special_tokens)

    def _refuse_call_arguments(self, options: Mapping[str, Any]) -> None:
        """Raise for call arguments left after the adapter took the ones it knows."""
        if not options:
            return
        fields = set(ToolACESettings.model_fields) - set(_CALL_SAMPLING)
        settings = sorted(name for name in options if name in fields)
        if settings:
            raise UnknownArgumentError(
                f"{settings} are settings of {type(self).__name__}, not call arguments: set "
                "them on the model, or call llm.model_copy(update={...}) for a variant."
            )
        raise UnknownArgumentError(
            _unknown_message(type(self).__name__, "call argument", options, _CALL_SAMPLING)
        )


@functools.lru_cache(maxsize=64)
def _local_profile(model: str, revision: str | None) -> PromptProfile:
    """The profile of a local checkpoint, worked out once rather than on every request.

    Its tokenizer is loaded only when its name does not tell the family.
    """
    named = named_profile([model])
    if named is not None:
        return named
    encoder = prompt_encoder(model, revision)
    return detect_profile([encoder.tokenizer.name_or_path], encoder.special_tokens)


def require_messages(messages: Sequence[Any]) -> None:
    """Raise :class:`PromptError` for an empty conversation, before any model work."""
    if not messages:
        raise PromptError("The message list is empty: pass at least one user message.")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set(getattr(model, "_ACCEPTED_ARGUMENTS", ()))
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
    return names


def _unknown_message(owner: str, kind: str, unknown: Iterable[str], known: Collection[str]) -> str:
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    message = f"{owner} got unknown {kind}{'s' if len(parts) > 1 else ''} {', '.join(parts)}."
    if len(known) <= 12:
        message += f" Accepted: {', '.join(sorted(known))}."
    return message
