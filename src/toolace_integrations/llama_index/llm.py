"""ToolACE-8B as a LlamaIndex ``FunctionCallingLLM``, running locally through transformers.

This module only maps LlamaIndex types to the framework-neutral core and back; the message,
tool and response conversions live in :mod:`toolace_integrations.llama_index.messages`.
Rendering, generation, grammar and parsing live in the core.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.callbacks import CallbackManager
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import CompletionToPromptType, MessagesToPromptType, ToolSelection
from llama_index.core.program.utils import get_program_for_llm
from llama_index.core.prompts import PromptTemplate
from llama_index.core.prompts.base import BasePromptTemplate
from llama_index.core.types import BaseOutputParser, PydanticProgramMode
from pydantic import BaseModel
from typing_extensions import Unpack

from toolace_integrations.core.chat import (
    ChatEvent,
    arun_chat,
    iterate_in_thread,
    stream_chat,
)
from toolace_integrations.core.generation import Backend, GenerationRequest
from toolace_integrations.errors import NoToolCallError, TruncatedOutputError
from toolace_integrations.format.tools import normalize_tools
from toolace_integrations.llama_index.messages import (
    chat_response,
    openai_tool,
    to_message,
    tool_calls,
    with_cache_usage,
)
from toolace_integrations.settings import ToolACEArguments, ToolACESettings, require_messages

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["NoToolCallError", "ToolACELLM"]

_DEFAULT_CONTEXT_WINDOW = 131072  # ToolACE-8B (Llama-3.1) max_position_embeddings


class ToolACELLMArguments(ToolACEArguments, total=False):
    """The shared settings' spellings plus LlamaIndex ``LLM``'s own fields, for type checkers."""

    class_name: str
    callback_manager: CallbackManager
    rate_limiter: Any
    system_prompt: str | None
    messages_to_prompt: MessagesToPromptType | None
    completion_to_prompt: CompletionToPromptType | None
    output_parser: BaseOutputParser | None
    pydantic_program_mode: PydanticProgramMode
    query_wrapper_prompt: BasePromptTemplate | None


class ToolACELLM(ToolACESettings, FunctionCallingLLM):
    """ToolACE-8B, loaded locally with transformers, as a LlamaIndex function-calling LLM.

    Construction loads nothing; the weights load on the first generation and are shared with
    every other ToolACE LLM or chat model (LangChain's ``ChatToolACE`` included) that names the
    same checkpoint, revision, dtype, device map and attention implementation. The settings
    are :class:`~toolace_integrations.settings.ToolACESettings`, shared with ``ChatToolACE``.

    Example:
        >>> from llama_index.core.tools import FunctionTool
        >>> def get_weather(city: str) -> str:
        ...     '''Current weather in a city.'''
        ...     return "sunny"
        >>> llm = ToolACELLM(model="Team-ACE/ToolACE-8B", max_new_tokens=256)
        >>> response = llm.chat_with_tools([FunctionTool.from_defaults(get_weather)],
        ...     user_msg="Weather in Paris?", tool_required=True)
        >>> [call.tool_name for call in llm.get_tool_calls_from_response(response)]
        ['get_weather']

        ``FunctionAgent(tools=[...], llm=llm)`` runs it as an agent.

    Notes:
        - With ``constrained_decoding`` (the default) tool calls stream as they are written:
          each streamed response carries them (``ToolCallBlock``s, which
          :meth:`get_tool_calls_from_response` reads, and ``additional_kwargs["tool_calls"]``)
          with the name first, then the arguments parsed so far, so
          ``stream_structured_predict`` fills its object in and ends with the object
          ``structured_predict`` returns. Without the grammar a call may still turn out
          malformed, so calls arrive whole on the last response. Call text never appears as
          ``delta`` text.
        - ``tool_required=True`` or ``tool_choice=<tool name>`` force a call; with
          ``constrained_decoding`` the grammar guarantees a well-formed call of a bound tool.
          ``FunctionAgent(initial_tool_choice=<name>)`` uses this to force the first step.
        - Only text is read: image, audio, video and document blocks raise ``PromptError``.
        - Per-call ``max_new_tokens``/``max_tokens``, ``temperature``, ``top_p``, ``stop``,
          ``seed``, ``cache_implementation`` and ``reuse_prefix`` override the settings;
          unknown or misspelled constructor and call arguments raise ``UnknownArgumentError``
          naming the closest one.
        - :meth:`load` loads now, :meth:`unload` lets the model go, :meth:`get_prompt_text`
          shows the prompt (tokenizer only).
    """

    _ACCEPTED_ARGUMENTS: ClassVar[frozenset[str]] = frozenset({"class_name"})

    if TYPE_CHECKING:  # every accepted spelling, typed as validated (pydantic shows one per field)

        def __init__(self, **kwargs: Unpack[ToolACELLMArguments]) -> None: ...

    @classmethod
    def class_name(cls) -> str:
        """The LlamaIndex serialization name."""
        return "ToolACELLM"

    @property
    def metadata(self) -> LLMMetadata:
        """Capabilities, ``context_window`` included.

        The window is the setting, else the server's ``max_model_len`` (asked for once; a
        ``RemoteError`` when the server cannot be reached), else the loaded model's or
        config.json's.
        """
        return LLMMetadata(
            context_window=self._context_size() or _DEFAULT_CONTEXT_WINDOW,
            num_output=self.max_new_tokens,
            is_chat_model=True,
            is_function_calling_model=True,
            model_name=self.model,
        )

    @property
    def model_name(self) -> str:
        """The model id or path."""
        return self.model

    def get_prompt_text(
        self, messages: Sequence[ChatMessage], tools: Sequence[BaseTool] | None = None
    ) -> str:
        """The exact prompt text the model reads for ``messages`` (and ``tools``); no weights."""
        request = self._build_request(messages, {"tools": tools} if tools else {})
        return self._encoder().prompt_text(request.messages, request.profile)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Generate one assistant turn (the stream, consumed)."""
        return deque(self._stream(messages, kwargs), maxlen=1)[0]

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream one assistant turn; closing the generator stops generation."""
        return self._stream(messages, kwargs)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        """Generate one assistant turn; concurrent calls are batched together."""
        require_messages(messages)
        request = await asyncio.to_thread(self._build_request, messages, kwargs)
        self._require_grammar(request.tools)
        backend = await asyncio.to_thread(self._load)
        result = await arun_chat(backend, request)
        response = chat_response(ChatEvent(result.parsed.content, result), result.parsed.content)
        return with_cache_usage(response, result)

    @llm_chat_callback()
    async def astream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> ChatResponseAsyncGen:
        """Stream one assistant turn from a worker thread; closing it stops generation."""
        return self._astream(messages, kwargs)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        """Answer ``prompt`` as a user message."""
        return chat_to_completion_decorator(self.chat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        """Stream the answer to ``prompt`` as a user message."""
        return stream_chat_to_completion_decorator(self.stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        """Answer ``prompt`` as a user message, asynchronously."""
        return await achat_to_completion_decorator(self.achat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseAsyncGen:
        """Stream the answer to ``prompt`` as a user message, asynchronously."""
        return await astream_chat_to_completion_decorator(self.astream_chat)(prompt, **kwargs)

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The ``chat`` arguments for a turn with ``tools``.

        ``tool_choice`` (``"auto"``, ``"none"``, ``"required"``, a tool name or an OpenAI
        ``{"type": "function", ...}`` dict) wins over ``tool_required``, which means
        ``"required"``; ``allow_parallel_tool_calls=False`` allows one call at most.

        Raises:
            GrammarUnavailableError: constrained decoding on a local model without xgrammar.
        """
        self._require_grammar(tools)
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            user_msg = ChatMessage(role=MessageRole.USER, content=user_msg)
        if user_msg is not None:
            messages.append(user_msg)
        if tool_choice is None and tools:
            tool_choice = "required" if tool_required else "auto"
        return {
            **kwargs,
            "messages": messages,
            "tools": [openai_tool(tool) for tool in tools],
            "tool_choice": tool_choice,
            "parallel_tool_calls": allow_parallel_tool_calls,
        }

    def _validate_chat_with_tools_response(
        self,
        response: ChatResponse,
        tools: Sequence[BaseTool],
        allow_parallel_tool_calls: bool = False,
        **kwargs: Any,
    ) -> ChatResponse:
        """Keep only the first call unless parallel calls are allowed."""
        if allow_parallel_tool_calls:
            return response
        message = response.message
        extra_calls = {id(b) for b in message.blocks if isinstance(b, ToolCallBlock)}
        first = next((b for b in message.blocks if isinstance(b, ToolCallBlock)), None)
        extra_calls.discard(id(first))
        message.blocks = [b for b in message.blocks if id(b) not in extra_calls]
        if len(message.additional_kwargs.get("tool_calls") or []) > 1:
            message.additional_kwargs["tool_calls"] = message.additional_kwargs["tool_calls"][:1]
        return response

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        """The calls of a response as ``ToolSelection`` records (partial ones while streaming).

        Raises:
            NoToolCallError: there is no call and ``error_on_no_tool_call`` is true.
            TruncatedOutputError: there is no call and ``max_tokens`` cut one mid-way, whatever
                ``error_on_no_tool_call`` says: an agent must not take the cut answer as final.
        """
        calls = tool_calls(response.message)
        invalid = response.message.additional_kwargs.get("invalid_tool_calls") or []
        raw = response.raw if isinstance(response.raw, Mapping) else {}
        cut = raw.get("finish_reason") == "length" and not raw.get("closed_early")
        if not calls and cut and (error_on_no_tool_call or invalid):
            raise TruncatedOutputError(int(raw.get("usage", {}).get("completion_tokens", 0)))
        if not calls and error_on_no_tool_call:
            problems = "; ".join(str(call.get("error")) for call in invalid)
            raise NoToolCallError(
                "Expected at least one tool call, but the model answered "
                f"{response.message.content or ''!r}"
                + (f" (invalid call attempts: {problems})" if problems else "")
                + ". Pass tool_required=True or tool_choice=<tool name> to force a call."
            )
        return [
            ToolSelection(tool_id=c.id, tool_name=c.name, tool_kwargs=c.arguments) for c in calls
        ]

    def _structured_stream_call(
        self,
        output_cls: type[BaseModel],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Any:
        """Stream structured output with the call forced, as ``structured_predict`` forces it.

        llama-index's ``FunctionCallingProgram.stream_call`` drops the ``tool_required`` its
        ``__call__`` passes, so the streamed answer could be text and every part empty.
        """
        program = self._structured_program(output_cls, prompt)
        return program.stream_call(llm_kwargs=llm_kwargs, **prompt_args)

    async def _structured_astream_call(
        self,
        output_cls: type[BaseModel],
        prompt: PromptTemplate,
        llm_kwargs: dict[str, Any] | None = None,
        **prompt_args: Any,
    ) -> Any:
        """The async :meth:`_structured_stream_call`."""
        program = self._structured_program(output_cls, prompt)
        return await program.astream_call(llm_kwargs=llm_kwargs, **prompt_args)

    def _structured_program(self, output_cls: type[BaseModel], prompt: PromptTemplate) -> Any:
        """llama-index's program for ``output_cls``; a function-calling one forces the call."""
        mode = self.pydantic_program_mode
        forced = {"tool_choice": "required"} if mode == PydanticProgramMode.DEFAULT else {}
        return get_program_for_llm(output_cls, prompt, self, pydantic_program_mode=mode, **forced)

    def _load(self) -> Backend:
        """The backend for these settings, shared with every adapter that loads the same."""
        return self._backend()

    def _build_request(
        self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> GenerationRequest:
        """Map LlamaIndex messages and call arguments to a core request, before model work.

        LlamaIndex's own ``tool_required`` and ``allow_parallel_tool_calls`` are understood
        when passed straight to ``chat``; ``verbose`` is dropped; anything else unknown raises.
        """
        options = dict(kwargs)
        options.pop("verbose", None)
        tools = normalize_tools([openai_tool(tool) for tool in options.pop("tools", None) or ()])
        parallel = options.pop("allow_parallel_tool_calls", True)
        parallel = bool(options.pop("parallel_tool_calls", parallel))
        choice = options.pop("tool_choice", None)
        if options.pop("tool_required", False) and choice is None:
            choice = "required"
        converted = [to_message(message) for message in messages]
        return self._core_request(converted, tools, choice, parallel=parallel, options=options)

    def _responses(
        self,
        messages: Sequence[ChatMessage],
        kwargs: Mapping[str, Any],
        cancel: threading.Event | None = None,
    ) -> Iterator[ChatResponse]:
        """The one generation path: chat events mapped to cumulative ``ChatResponse`` records."""
        require_messages(messages)
        request = self._build_request(messages, kwargs)
        self._require_grammar(request.tools)
        text = ""
        calls: dict[str, tuple[int, str, str]] = {}  # id: index, name, arguments so far
        for event in stream_chat(self._load(), request, cancel):
            text += event.content
            response = chat_response(event, text, calls)
            yield response if event.result is None else with_cache_usage(response, event.result)

    def _stream(
        self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> ChatResponseGen:
        cancel = threading.Event()
        try:
            yield from self._responses(messages, kwargs, cancel)
        finally:
            cancel.set()

    async def _astream(
        self, messages: Sequence[ChatMessage], kwargs: Mapping[str, Any]
    ) -> ChatResponseAsyncGen:
        responses = iterate_in_thread(partial(self._responses, messages, kwargs))
        async with aclosing(responses):
            async for response in responses:
                yield response
