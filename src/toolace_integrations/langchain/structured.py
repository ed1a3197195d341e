"""``with_structured_output``: typed per schema, answered by one forced call of a tool."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar, overload

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel
from typing_extensions import TypedDict

from toolace_integrations.errors import UnknownArgumentError
from toolace_integrations.langchain.messages import structured_output

_Model = TypeVar("_Model", bound=BaseModel)
_Parsed = TypeVar("_Parsed")
_Method = Literal["function_calling", "json_schema", "json_mode"]


class StructuredAnswer(TypedDict, Generic[_Parsed]):
    """``with_structured_output(..., include_raw=True)``'s answer.

    Attributes:
        raw: The model's message.
        parsed: The answer as the schema's type; ``None`` when it failed to parse.
        parsing_error: Why it failed, else ``None``.
    """

    raw: BaseMessage
    parsed: _Parsed | None
    parsing_error: BaseException | None


class StructuredChatModel(BaseChatModel):
    """A chat model whose structured output is a forced call of a tool built from the schema.

    Typed as ChatOpenAI's, but closer: a pydantic class gives a ``Runnable`` of that class, a
    JSON schema a ``Runnable`` of ``dict``, and ``include_raw=True`` a :class:`StructuredAnswer`.
    """

    @overload  # type: ignore[override]  # typed per schema; BaseChatModel's (dict | type) splits
    def with_structured_output(
        self, schema: type[_Model], *, include_raw: Literal[False] = False,
        method: _Method = "function_calling", strict: bool | None = None,
    ) -> Runnable[LanguageModelInput, _Model]: ...  # fmt: skip

    @overload
    def with_structured_output(
        self, schema: type[_Model], *, include_raw: Literal[True],
        method: _Method = "function_calling", strict: bool | None = None,
    ) -> Runnable[LanguageModelInput, StructuredAnswer[_Model]]: ...  # fmt: skip

    @overload
    def with_structured_output(
        self, schema: dict[str, Any], *, include_raw: Literal[False] = False,
        method: _Method = "function_calling", strict: bool | None = None,
    ) -> Runnable[LanguageModelInput, dict[str, Any]]: ...  # fmt: skip

    @overload
    def with_structured_output(
        self, schema: dict[str, Any], *, include_raw: Literal[True],
        method: _Method = "function_calling", strict: bool | None = None,
    ) -> Runnable[LanguageModelInput, StructuredAnswer[dict[str, Any]]]: ...  # fmt: skip

    @overload
    def with_structured_output(
        self, schema: type, *, include_raw: bool = False,
        method: _Method = "function_calling", strict: bool | None = None,
    ) -> Runnable[LanguageModelInput, Any]: ...  # fmt: skip

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: _Method = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answer as ``schema`` (pydantic class, TypedDict or JSON schema) via a forced call.

        Every ``method`` runs as one grammar-constrained call of a tool built from ``schema``,
        so the output always matches it; ``strict`` is accepted and always in effect. An
        answer cut by ``max_tokens`` gives a :class:`TruncatedOutputError` (as
        ``parsing_error`` with ``include_raw=True``) rather than ``None``.
        """
        if method not in ("function_calling", "json_schema", "json_mode"):
            raise ValueError(f"Unknown method {method!r}; use 'function_calling'.")
        if kwargs:
            raise UnknownArgumentError(f"with_structured_output got unknown arguments {kwargs}.")
        llm = self.bind_tools(
            [schema],
            tool_choice="any",
            ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
        )
        return structured_output(llm, schema, include_raw=include_raw)

