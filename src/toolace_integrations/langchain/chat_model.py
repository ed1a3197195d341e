"""LangChain chat model for ToolACE-8B: a thin map between LangChain types and the neutral core.

Prompt rendering, generation, grammar and parsing live in :mod:`toolace_integrations.core.chat` and
below, the settings in :mod:`toolace_integrations.settings` (shared with LlamaIndex's
``ToolACELLM``), message conversion in :mod:`toolace_integrations.langchain.messages`, the
streamed turn in :mod:`~toolace_integrations.langchain.stream` and the batch callbacks in
:mod:`~toolace_integrations.langchain.batch`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import aclosing, closing
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import LanguageModelInput, ModelProfile
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
)
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field
from typing_extensions import Unpack

from toolace_integrations.core import chat
from toolace_integrations.core.generation import Backend, GenerationRequest
from toolace_integrations.errors import ToolSpecError
from toolace_integrations.format.tools import normalize_tools, resolve_tool_choice
from toolace_integrations.langchain.batch import end_runs, shared_config, start_runs
from toolace_integrations.langchain.messages import (
    openai_tools,
    response_format_tool,
    to_message,
    unique_tools,
)
from toolace_integrations.langchain.messages import to_ai_message as _to_ai_message
from toolace_integrations.langchain.profile import ServerProfile
from toolace_integrations.langchain.signatures import ChatToolACEArguments
from toolace_integrations.langchain.stream import Piece, to_chunk, turn_pieces
from toolace_integrations.langchain.structured import StructuredChatModel
from toolace_integrations.settings import ToolACESettings, require_messages

__all__ = ["ChatToolACE"]

# Call arguments LangChain itself adds (bind, with_structured_output); taken and dropped.
_FRAMEWORK_ARGUMENTS = ("stream", "ls_structured_output_format", "structured_output_format")


class ChatToolACE(ToolACESettings, StructuredChatModel):
    """ToolACE-8B run locally with transformers, with strict, grammar-constrained tool calls.

    Construction loads nothing; the weights load on the first call (or :meth:`load`) and are
    shared by every instance (and LlamaIndex ``ToolACELLM``) that would load the same weights.

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
        - Unknown or misspelled constructor and call arguments raise ``UnknownArgumentError``
          naming the closest one; ``stream_usage`` is accepted (usage is always streamed).
        - Token counts (``get_num_tokens*``, ``trim_messages``) use the checkpoint's tokenizer.
        - ``base_url`` runs on a vLLM server; ``tokenizer``, ``timeout``, ``max_retries``,
          ``api_key``, ``grammar_param``, ``extra_body``, ``batch_prompts`` and
          ``max_concurrency`` apply to it only.
    """

    streaming: bool = Field(default=False, description="Make invoke() stream under the hood.")

    _ACCEPTED_ARGUMENTS: ClassVar[frozenset[str]] = frozenset({"stream_usage"})

    if TYPE_CHECKING:  # every accepted spelling, typed as validated (pydantic shows one per field)

        def __init__(self, **kwargs: Unpack[ChatToolACEArguments]) -> None: ...

    @property
    def _llm_type(self) -> str:
        return "toolace"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return self._answer_settings()

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider="toolace",
            ls_model_name=kwargs.get("model") or self.model,
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
            ls_max_tokens=kwargs.get("max_tokens", self.max_new_tokens),
        )
        if stop := stop or self.stop:
            params["ls_stop"] = [stop] if isinstance(stop, str) else list(stop)
        return params

    def _resolve_model_profile(self) -> ModelProfile | None:
        profile = ModelProfile(
            tool_calling=True,
            tool_choice=True,
            tool_call_streaming=True,
            structured_output=True,
            image_inputs=False,
        )
        if self.base_url and not self.context_window:  # the server's, asked for when read
            return cast(ModelProfile, ServerProfile(profile, self._context_size))
        if window := self._context_size():
            profile["max_input_tokens"] = window
        return profile

    def get_prompt_text(self, messages: LanguageModelInput, **kwargs: Any) -> str:
        """The exact prompt text the model reads for ``messages``, for debugging.

        Loads only the tokenizer.

        Args:
            messages: Anything ``invoke`` accepts.
            **kwargs: Call arguments such as ``tools=[...]`` (any tool ``bind_tools`` takes).
        """
        conversation = self._convert_input(messages).to_messages()
        request, _, _ = self._request(conversation, None, openai_tools(kwargs))
        return self._encoder().prompt_text(request.messages, request.profile)

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` from the checkpoint's tokenizer (loaded alone, no weights)."""
        if self.custom_get_token_ids is not None:
            return self.custom_get_token_ids(text)
        return self._encoder().text.content_ids(text)

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Tokens of the whole ToolACE prompt for ``messages`` (and ``tools``), as generated.

        Equals the ``input_tokens`` a call with these messages and tools reports. A tool result
        whose call is not among ``messages`` still counts (as ``trim_messages`` needs).
        """
        names = {
            c["id"]: c["name"] for m in messages if isinstance(m, AIMessage) for c in m.tool_calls
        }
        named = [  # trim_messages counts partial (even reversed) lists: name results up front
            m.model_copy(update={"name": names.get(m.tool_call_id, "tool")})
            if isinstance(m, ToolMessage) and not m.name
            else m
            for m in messages
        ]
        request, _, _ = self._request(named, None, openai_tools({"tools": tools}))
        encoder = self._encoder()
        return len(encoder.encode(request.messages, request.profile)) if request.messages else 0

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        parallel_tool_calls: bool | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools, checked now so a bad name or ``tool_choice`` fails here, not mid-run.

        Args:
            tools: Anything ``convert_to_openai_tool`` accepts (tools, functions, pydantic
                models, TypedDicts, JSON schemas).
            tool_choice: ``"auto"``/``None``, ``"none"``, ``"any"``/``"required"``, a tool name
                or ``{"type": "function", "function": {"name": ...}}``.
            parallel_tool_calls: ``False`` allows at most one call per turn.
            strict: Accepted for ChatOpenAI compatibility; with ``constrained_decoding`` calls
                always match the schemas.
            **kwargs: Further call arguments for :meth:`bind`.

        Raises:
            ToolSpecError: a tool ToolACE's call syntax cannot express.
            ToolChoiceError: an unknown ``tool_choice`` or one naming an unbound tool.
            GrammarUnavailableError: constrained decoding on a local model without xgrammar.
        """
        formatted = unique_tools([convert_to_openai_tool(tool) for tool in tools])
        self._require_grammar(formatted)
        if parallel_tool_calls is None and "ls_structured_output_format" in kwargs:
            parallel_tool_calls = False  # with_structured_output wants exactly one answer
        resolve_tool_choice(tool_choice, normalize_tools(formatted))
        return super().bind(
            tools=formatted,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
            **kwargs,
        )

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
        shared = shared_config(self, inputs, config, return_exceptions)
        if shared is None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        config = shared
        stop = kwargs.pop("stop", None)
        conversations = [self._convert_input(item).to_messages() for item in inputs]
        prepared = [self._prepare(conversation, stop, kwargs) for conversation in conversations]
        runs = start_runs(self, config, conversations, stop, kwargs)
        try:
            results = chat.run_chat_batch(prepared[0][0], [request for _, request, _ in prepared])
        except BaseException as error:
            for run in runs:
                run.on_llm_error(error)
            raise
        messages = [_to_ai_message(r, p[2]) for r, p in zip(results, prepared, strict=True)]
        end_runs(runs, messages)
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
        if shared_config(self, inputs, config, return_exceptions) is None:
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
                    if (
                        chunk := to_chunk(event.content, message, event.calls, streamed)
                    ) is not None:
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
                if (chunk := to_chunk(event.content, message, event.calls, streamed)) is not None:
                    if run_manager:
                        await run_manager.on_llm_new_token(event.content, chunk=chunk)
                    yield chunk

    def _turn(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        kwargs: dict[str, Any],
        cancel: threading.Event,
    ) -> Generator[Piece, None, None]:
        """The one generation path: the turn's pieces, the final message last."""
        yield from turn_pieces(*self._prepare(messages, stop, kwargs), cancel)

    def _request(
        self, messages: Sequence[BaseMessage], stop: Any, kwargs: Mapping[str, Any]
    ) -> tuple[GenerationRequest, str | None, str | None]:
        """Map LangChain messages and call arguments to a core request, before model work.

        Returns the request, the name of the ``response_format`` answer tool and the ``model``
        the call names (``None``: the field).
        """
        options = dict(kwargs)
        for ignored in (*_FRAMEWORK_ARGUMENTS, *self._ACCEPTED_ARGUMENTS):
            options.pop(ignored, None)
        model = options.pop("model", None)
        tools = normalize_tools(options.pop("tools", None))
        choice = options.pop("tool_choice", None)
        parallel = options.pop("parallel_tool_calls", None) is not False
        answer_tool = response_format_tool(options.pop("response_format", None))
        if answer_tool is not None:
            if answer_tool.name in {tool.name for tool in tools}:
                raise ToolSpecError(f"response_format {answer_tool.name!r} clashes with a tool.")
            tools.append(answer_tool)
            # The answer is a call too: "auto" must call a tool or answer, "none" must answer.
            choice = {None: "any", "auto": "any", "none": answer_tool.name}.get(choice, choice)
        converted = [to_message(message) for message in messages]
        request = self._core_request(
            converted, tools, choice, parallel=parallel, options=options, stop=stop
        )
        return request, answer_tool.name if answer_tool else None, model

    def _prepare(
        self, messages: Sequence[BaseMessage], stop: Any, kwargs: Mapping[str, Any]
    ) -> tuple[Backend, GenerationRequest, str | None]:
        """The backend and request for a call; bad input raises before any model work."""
        require_messages(messages)
        request, answer_tool, model = self._request(messages, stop, kwargs)
        self._require_grammar(request.tools)
        return self._backend(model), request, answer_tool
