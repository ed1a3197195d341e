"""LangChain chat model for ToolACE-8B: a thin map between LangChain types and the neutral core.

Prompt rendering, generation, grammar and parsing live in :mod:`toolace_integrations.chat` and
below; this module only converts messages, tools and results to and from LangChain's types.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, closing, suppress
from functools import partial
from typing import Any, Literal, TypeVar, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel, LanguageModelInput, ModelProfile
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.json import parse_partial_json
from langchain_core.utils.utils import LC_ID_PREFIX, secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from toolace_integrations import chat
from toolace_integrations.errors import ToolSpecError
from toolace_integrations.generation import (
    Backend,
    GenerationRequest,
    SamplingParams,
    connect,
)
from toolace_integrations.incremental import CallDelta
from toolace_integrations.parsing import ToolCall
from toolace_integrations.partial_json import breaking_suffix
from toolace_integrations.prompt import (
    DEFAULT_SYSTEM_TEMPLATE,
    Message,
    PromptError,
    tool_schema_for_prompt,
)
from toolace_integrations.tools import FunctionSpec, normalize_tools, resolve_tool_choice

__all__ = ["ChatToolACE"]

_SKIPPED_BLOCKS = {"tool_call", "tool_call_chunk", "invalid_tool_call", "tool_use", "reasoning"}
_T = TypeVar("_T")
_Piece = tuple[chat.ChatEvent, AIMessage | None]
_IDENTIFYING = {"model", "revision", "dtype", "max_new_tokens", "temperature", "top_p", "seed"}


class ChatToolACE(BaseChatModel):
    """ToolACE-8B run locally with transformers, with strict, grammar-constrained tool calls.

    Construction loads nothing; the weights load on the first call (or :meth:`load`) and are
    shared by every instance with the same checkpoint settings.

    Example:
        .. code-block:: python

            from langchain_core.tools import tool
            from toolace_integrations import ChatToolACE

            @tool
            def get_weather(city: str) -> str:
                \"\"\"Get the current weather for a city.\"\"\"
                return "sunny"

            llm = ChatToolACE(model="Team-ACE/ToolACE-8B", device_map="auto", max_tokens=256)
            message = llm.bind_tools([get_weather]).invoke("What's the weather in Paris?")
            message.tool_calls  # [{'name': 'get_weather', 'args': {'city': 'Paris'}, ...}]

    Notes:
        - With tools bound and ``constrained_decoding=True`` (needs xgrammar) a grammar keeps
          every call valid for the bound tools and enforces ``tool_choice``.
        - Calls that fail to parse become ``invalid_tool_calls``. In a stream LangChain
          rebuilds them from ``tool_call_chunks``, which cannot carry the error text.
        - ``response_format={"type": "json_schema", ...}`` (``create_agent``'s provider
          strategy) is answered by a forced call of a tool built from the schema and returned
          as JSON text; every ``with_structured_output`` method is such a forced call.
        - ``batch`` runs one padded ``generate`` when the inputs share a config.
        - Text-only: image, audio and file content blocks raise :class:`PromptError`.
        - ``timeout``, ``max_retries`` and ``api_key`` are accepted for API compatibility and
          ignored by the local engine (a remote backend will use them).
    """

    model_config = ConfigDict(populate_by_name=True)

    model: str = Field(
        default="Team-ACE/ToolACE-8B", description="Hugging Face model id or local folder."
    )
    revision: str | None = Field(default=None, description="Hub branch, tag or commit to load.")
    dtype: str | None = Field(
        default=None,
        alias="torch_dtype",
        description="Weight dtype such as 'bfloat16'; None: bfloat16 on CUDA, float32 on CPU.",
    )
    device_map: str | dict[str, Any] | None = Field(
        default=None, description="transformers device_map ('auto', 'cuda:0'); None: CPU."
    )
    attn_implementation: str | None = Field(
        default=None, description="Attention kernel, e.g. 'sdpa' or 'flash_attention_2'."
    )
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra from_pretrained arguments, e.g. {'quantization_config': ...}.",
    )
    max_new_tokens: int = Field(
        default=512, ge=1, alias="max_tokens", description="Most tokens to generate per turn."
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
    system_template: str = Field(
        default=DEFAULT_SYSTEM_TEMPLATE,
        description="ToolACE's system prompt; '{functions}' is replaced by the tool list.",
    )
    constrained_decoding: bool = Field(
        default=True, description="Constrain output to valid calls of bound tools (xgrammar)."
    )
    streaming: bool = Field(default=False, description="Make invoke() stream under the hood.")
    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible server (vLLM) to generate on, e.g. http://host:8000/v1; "
        "None runs the model in this process.",
    )
    timeout: float | None = Field(default=None, description="Seconds per server request.")
    max_retries: int | None = Field(
        default=None, description="Retries of failed server requests (connection, 429, 5xx)."
    )
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(["TOOLACE_API_KEY", "OPENAI_API_KEY"], default=None),
        description="Server API key; read from TOOLACE_API_KEY or OPENAI_API_KEY when unset.",
    )

    _connected: Backend | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "toolace"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return self.model_dump(include=_IDENTIFYING)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="toolace",
            ls_model_name=kwargs.get("model") or self.model,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_new_tokens),
        )
        if stop := stop or self.stop:
            params["ls_stop"] = list(stop)
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        return ModelProfile(
            tool_calling=True,
            tool_choice=True,
            tool_call_streaming=True,
            structured_output=True,
            image_inputs=False,
        )

    def load(self) -> ChatToolACE:
        """Load the tokenizer and weights now rather than on the first call; returns ``self``."""
        self._backend()
        return self

    def get_prompt_text(self, messages: LanguageModelInput, **kwargs: Any) -> str:
        """The exact prompt text the model reads for ``messages``, for debugging.

        Args:
            messages: Anything ``invoke`` accepts.
            **kwargs: Call arguments such as ``tools=[...]`` (any tool ``bind_tools`` takes).
        """
        if (tools := kwargs.pop("tools", None)) is not None:
            kwargs["tools"] = [convert_to_openai_tool(tool) for tool in tools]
        conversation = self._convert_input(messages).to_messages()
        backend, request, _ = self._prepare(conversation, None, kwargs)
        return backend.prompt_text(request.messages)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools, checked now so a bad name or ``tool_choice`` fails here, not mid-run.

        Args:
            tools: Anything ``convert_to_openai_tool`` accepts (tools, functions, pydantic
                models, TypedDicts, JSON schemas).
            tool_choice: ``"auto"``/``None``, ``"none"``, ``"any"``/``"required"``, a tool name
                or ``{"type": "function", "function": {"name": ...}}``.
            parallel_tool_calls: ``False`` allows at most one call per turn.
            **kwargs: Further call arguments for :meth:`bind`.

        Raises:
            ToolSpecError: a tool ToolACE's call syntax cannot express.
            ToolChoiceError: an unknown ``tool_choice`` or one naming an unbound tool.
        """
        formatted = _unique_tools([convert_to_openai_tool(tool) for tool in tools])
        if parallel_tool_calls is None and "ls_structured_output_format" in kwargs:
            parallel_tool_calls = False  # with_structured_output wants exactly one answer
        resolve_tool_choice(tool_choice, normalize_tools(formatted))
        return super().bind(
            tools=formatted,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            **kwargs,
        )

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Answer as ``schema`` (pydantic class, TypedDict or JSON schema) via a forced call.

        Every ``method`` runs as one grammar-constrained call of a tool built from ``schema``,
        so the output always matches it; ``strict`` is accepted and always in effect.
        """
        if method not in ("function_calling", "json_schema", "json_mode"):
            raise ValueError(f"Unknown method {method!r}; use 'function_calling'.")
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Generate the conversations together as one left-padded batch.

        Falls back to LangChain's thread-per-input batch when configs differ per input,
        ``return_exceptions`` is set, or a cache or rate limiter is configured. Batched
        generation cannot be cancelled midway.
        """
        shared = self._shared_config(inputs, config, return_exceptions)
        if shared is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        config = shared
        stop = kwargs.pop("stop", None)
        conversations = [self._convert_input(item).to_messages() for item in inputs]
        prepared = [self._prepare(conversation, stop, kwargs) for conversation in conversations]
        manager = CallbackManager.configure(
            config.get("callbacks"),
            self.callbacks,
            self.verbose,
            config.get("tags"),
            self.tags,
            {**config.get("metadata", {}), **self._get_ls_params(stop=stop, **kwargs)},
            self.metadata,
        )
        runs = manager.on_chat_model_start(
            self._serialized,
            conversations,
            invocation_params=self._get_invocation_params(stop=stop, **kwargs),
            options={"stop": stop},
            name=config.get("run_name"),
            run_id=config.get("run_id"),
            batch_size=len(conversations),
        )
        try:
            results = chat.run_chat_batch(prepared[0][0], [request for _, request, _ in prepared])
        except BaseException as error:
            for run in runs:
                run.on_llm_error(error)
            raise
        messages = [_to_ai_message(r, p[2]) for r, p in zip(results, prepared, strict=True)]
        for run, message in zip(runs, messages, strict=True):
            message.id = f"{LC_ID_PREFIX}-{run.run_id}"
            run.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]]))
        return messages

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """:meth:`batch` in a worker thread, so the event loop keeps running."""
        if self._shared_config(inputs, config, return_exceptions) is None:
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        return await asyncio.to_thread(self.batch, inputs, config, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with closing(self._turn(messages, stop, kwargs, threading.Event())) as turn:
            message = next(message for _, message in turn if message is not None)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        cancel = threading.Event()
        streamed: dict[str, tuple[int, str]] = {}
        try:
            with closing(self._turn(messages, stop, kwargs, cancel)) as turn:
                for event, message in turn:
                    if (chunk := _chunk(event.content, message, event.calls, streamed)) is not None:
                        if run_manager:
                            run_manager.on_llm_new_token(event.content, chunk=chunk)
                        yield chunk
        finally:
            cancel.set()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Concurrent ``ainvoke`` calls are batched together (see ``chat.arun_chat``)."""
        backend, request, answer_tool = await asyncio.to_thread(
            self._prepare, messages, stop, kwargs
        )
        result = await chat.arun_chat(backend, request)
        return ChatResult(generations=[ChatGeneration(message=_to_ai_message(result, answer_tool))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        pieces = chat.iterate_in_thread(partial(self._turn, messages, stop, kwargs))
        streamed: dict[str, tuple[int, str]] = {}
        async with aclosing(pieces) as turn:
            async for event, message in turn:
                if (chunk := _chunk(event.content, message, event.calls, streamed)) is not None:
                    if run_manager:
                        await run_manager.on_llm_new_token(event.content, chunk=chunk)
                    yield chunk

    def _turn(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        cancel: threading.Event,
    ) -> Generator[_Piece, None, None]:
        """The one generation path: ``(event, None)`` pieces, then ``(last, final message)``.

        Call pieces of the ``response_format`` answer tool are dropped: that call becomes the
        final message's content, not a tool call.
        """
        backend, request, answer_tool = self._prepare(messages, stop, kwargs)
        shown = ""
        answers: set[str] = set()
        stream = chat.stream_chat(backend, request, cancel)  # a generator: close() stops it
        with closing(cast("Generator[chat.ChatEvent, None, None]", stream)) as events:
            for event in events:
                answers |= {c.id for c in event.calls if c.name and c.name == answer_tool}
                calls = tuple(c for c in event.calls if c.id not in answers)
                if event.result is None:
                    shown += event.content
                    yield chat.ChatEvent(event.content, calls=calls), None
                    continue
                message = _to_ai_message(event.result, answer_tool)
                text = str(message.content)
                tail = text[len(shown) :] if text.startswith(shown) else event.content
                yield chat.ChatEvent(tail, calls=calls), message

    def _prepare(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> tuple[Backend, GenerationRequest, str | None]:
        """Map LangChain messages and call arguments to a core request."""
        options = dict(kwargs)
        for ignored in ("stream", "ls_structured_output_format", "structured_output_format"):
            options.pop(ignored, None)
        model = options.pop("model", None)
        tools = normalize_tools(options.pop("tools", None))
        choice = options.pop("tool_choice", None)
        parallel = options.pop("parallel_tool_calls", None) is not False
        answer_tool = _response_format_tool(options.pop("response_format", None))
        if answer_tool is not None:
            if answer_tool.name in {tool.name for tool in tools}:
                raise ToolSpecError(f"response_format {answer_tool.name!r} clashes with a tool.")
            tools.append(answer_tool)
            # The answer is a call too: "auto" must call a tool or answer, "none" must answer.
            choice = {None: "any", "auto": "any", "none": answer_tool.name}.get(choice, choice)
        max_new_tokens = options.pop("max_new_tokens", self.max_new_tokens)
        sampling = SamplingParams(
            max_new_tokens=options.pop("max_tokens", max_new_tokens),
            temperature=options.pop("temperature", self.temperature),
            top_p=options.pop("top_p", self.top_p),
            stop=tuple(stop if stop is not None else self.stop or ()),
            seed=options.pop("seed", self.seed),
            cache_implementation=self.cache_implementation,
            reuse_prefix=self.reuse_prefix,
        )
        if options:
            raise TypeError(f"ChatToolACE got unsupported call arguments {sorted(options)}.")
        request = chat.build_request(
            [_to_message(message) for message in messages],
            tools,
            tool_choice=resolve_tool_choice(choice, tools, parallel=parallel),
            sampling=sampling,
            system_template=self.system_template,
            constrained=self.constrained_decoding,
        )
        return self._backend(model), request, answer_tool.name if answer_tool else None

    def _backend(self, model: str | None = None) -> Backend:
        """The backend for these fields (a call may name another ``model``)."""
        if model is None and self._connected is not None:
            return self._connected
        backend = connect(
            model or self.model,
            revision=self.revision,
            dtype=self.dtype,
            device_map=self.device_map,
            attn_implementation=self.attn_implementation,
            model_kwargs=self.model_kwargs,
            base_url=self.base_url,
            api_key=self.api_key.get_secret_value() if self.api_key else None,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )
        if model is None:
            self._connected = backend
        return backend

    def _shared_config(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None,
        return_exceptions: bool,
    ) -> RunnableConfig | None:
        """The config every input shares when they can run as one batch, else ``None``.

        A cache or rate limiter must see each call, so they rule batching out too.
        """
        cache = self.cache if self.cache is not None else get_llm_cache() is not None
        if len(inputs) < 2 or return_exceptions or cache is not False or self.rate_limiter:
            return None
        configs = get_config_list(config, len(inputs))
        return configs[0] if all(c == configs[0] for c in configs[1:]) else None


def _unique_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop repeats that ToolACE sees identically, e.g. a pydantic model and its JSON schema."""
    seen: dict[str, str] = {}
    unique = []
    for tool in tools:
        spec = normalize_tools([tool])[0]
        key = json.dumps(tool_schema_for_prompt(spec), sort_keys=True, default=str)
        if seen.get(spec.name) != key:  # a different tool of the same name fails later
            seen[spec.name] = key
            unique.append(tool)
    return unique


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        kind = "text" if isinstance(block, str) else block.get("type")
        if kind == "text":
            parts.append(block if isinstance(block, str) else str(block.get("text", "")))
        elif kind not in _SKIPPED_BLOCKS:
            raise PromptError(
                f"ToolACE-8B reads text only; a {kind!r} content block cannot be sent. "
                "Describe the content in text instead."
            )
    return "".join(parts)


def _to_message(message: BaseMessage) -> Message:
    if isinstance(message, SystemMessage):
        return Message("system", _text(message.content))
    if isinstance(message, HumanMessage):
        return Message("user", _text(message.content))
    if isinstance(message, AIMessage):
        calls = tuple(
            ToolCall(c["name"], c["args"], c["id"]) if c["id"] else ToolCall(c["name"], c["args"])
            for c in message.tool_calls
        )
        return Message("assistant", _text(message.content), calls)
    if isinstance(message, ToolMessage):
        content = message.content
        if not isinstance(content, str):
            textual = all(isinstance(b, str) or b.get("type") == "text" for b in content)
            content = _text(content) if textual else json.dumps(content, ensure_ascii=False)
        return Message("tool", content, tool_call_id=message.tool_call_id, name=message.name)
    if isinstance(message, ChatMessage) and message.role in ("system", "user", "assistant"):
        return Message(message.role, _text(message.content))  # type: ignore[arg-type]
    raise PromptError(
        f"ChatToolACE cannot send a {type(message).__name__} (type {message.type!r}); "
        "use SystemMessage, HumanMessage, AIMessage or ToolMessage."
    )


def _response_format_tool(response_format: Any) -> FunctionSpec | None:
    """``{"type": "json_schema", ...}`` (create_agent's ProviderStrategy) as a forced tool."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        raise ToolSpecError(
            f"response_format={response_format!r} is not supported; pass "
            "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}} "
            "or use with_structured_output(schema)."
        )
    spec = response_format.get("json_schema") or {}
    function = {"name": spec.get("name"), "description": spec.get("description", "")}
    return normalize_tools([{**function, "parameters": spec.get("schema") or {}}])[0]


def _to_ai_message(result: chat.ChatTurn, answer_tool: str | None) -> AIMessage:
    parsed = result.parsed
    calls, content = parsed.calls, parsed.content
    if answer_tool and (answers := [call for call in calls if call.name == answer_tool]):
        content = json.dumps(answers[0].arguments, ensure_ascii=False)
        calls = [call for call in calls if call.name != answer_tool]
    return AIMessage(
        content=content,
        tool_calls=[tool_call(name=c.name, args=c.arguments, id=c.id) for c in calls],
        invalid_tool_calls=[
            invalid_tool_call(name=c.name, args=c.text, id=c.id, error=c.error)
            for c in parsed.invalid
        ],
        usage_metadata={
            "input_tokens": result.prompt_tokens,
            "output_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        },
        response_metadata={
            "model_name": result.model_name,
            "finish_reason": result.finish_reason,
            "model_provider": "toolace",
            "raw_output": result.text,
            **({"closed_early": True} if result.closed_early else {}),
        },
    )


def _chunk(
    delta: str,
    message: AIMessage | None,
    calls: Sequence[CallDelta] = (),
    streamed: dict[str, tuple[int, str]] | None = None,
) -> ChatGenerationChunk | None:
    """A content and call piece, or the last chunk carrying calls, usage and metadata.

    ``streamed`` maps the id of each call streamed so far to its index and argument text; a
    streamed call that ends invalid gets a suffix that makes LangChain read it as invalid. Calls
    the stream never showed arrive whole on the last chunk.
    """
    streamed = {} if streamed is None else streamed
    chunks = []
    for piece in calls:
        index, arguments = streamed.get(piece.id, (piece.index, ""))
        text = breaking_suffix(arguments) if piece.error is not None else piece.arguments
        streamed[piece.id] = (index, arguments + text)
        chunks.append(tool_call_chunk(name=piece.name, args=text, id=piece.id, index=index))
    if message is None:
        if not (delta or chunks):
            return None
        return ChatGenerationChunk(message=AIMessageChunk(content=delta, tool_call_chunks=chunks))
    fresh = max((index for index, _ in streamed.values()), default=-1) + 1
    for c in message.tool_calls:
        if c["id"] not in streamed:
            chunks.append(
                tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=fresh)
            )
            fresh += 1
    for bad in message.invalid_tool_calls:
        if bad["id"] in streamed:
            continue
        args = bad["args"] or ""
        with suppress(Exception):  # LangChain would read a JSON object as a valid call
            if isinstance(parse_partial_json(args), dict):
                args = json.dumps(args)
        chunks.append(tool_call_chunk(name=bad["name"], args=args, id=bad["id"], index=fresh))
        fresh += 1
    last = AIMessageChunk(
        content=delta,
        tool_call_chunks=chunks,
        usage_metadata=message.usage_metadata,
        response_metadata=message.response_metadata,
        chunk_position="last",
    )
    return ChatGenerationChunk(message=last)
