"""Errors raised by toolace-integrations.

Every error derives from :class:`ToolACEError`, so callers can catch one base class. Each
message says what was wrong and what to do about it.
"""

from __future__ import annotations


class ToolACEError(Exception):
    """Base class of every error this package raises."""


class ToolSpecError(ToolACEError, ValueError):
    """A tool definition that ToolACE's call syntax cannot express or that is ambiguous."""


class ToolChoiceError(ToolACEError, ValueError):
    """A ``tool_choice`` value that is unknown or names a tool that is not bound."""


class ModelLoadError(ToolACEError, OSError):
    """The model or tokenizer could not be loaded from the given id or path."""


class PromptTooLongError(ToolACEError, ValueError):
    """The rendered prompt does not fit in the model's context window."""

    def __init__(self, prompt_tokens: int, context_window: int, max_new_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.context_window = context_window
        self.max_new_tokens = max_new_tokens
        super().__init__(
            f"The prompt is {prompt_tokens} tokens but the model's context window is "
            f"{context_window} tokens, which leaves no room for an answer. Shorten the "
            "conversation (e.g. drop old turns or long tool results) or bind fewer tools. "
            f"Answers are cut where the window ends, even before max_new_tokens={max_new_tokens}."
        )


class GenerationError(ToolACEError, RuntimeError):
    """Generation failed inside the model (for example CUDA ran out of memory)."""


class GrammarUnavailableError(ToolACEError, ImportError):
    """Constrained decoding was requested but the grammar engine is not installed."""


class NoToolCallError(ToolACEError, ValueError):
    """A response carries no tool call where one was expected."""


class UnknownArgumentError(ToolACEError, TypeError):
    """A constructor or call argument that no setting of the model has (often a misspelling)."""


class InvalidSettingError(ToolACEError, ValueError):
    """A per-call setting with a value generation cannot use, such as ``max_tokens=0``."""


class TruncatedOutputError(NoToolCallError):
    """A forced answer (structured output, a required call) was cut by ``max_tokens``.

    Attributes:
        completion_tokens: Tokens generated before the cut.
    """

    def __init__(self, completion_tokens: int) -> None:
        self.completion_tokens = completion_tokens
        super().__init__(
            f"The answer was cut at {completion_tokens} tokens (the max_tokens limit) before "
            "the structured answer or tool call was complete. Raise max_tokens "
            "(max_new_tokens) on the model or for this call."
        )


class CallFormatError(ToolACEError, ValueError, TypeError):
    """A tool call (usually a past one being replayed) that ToolACE's call syntax cannot write."""


class GrammarTooLargeError(ToolACEError, ValueError):
    """The tool-call grammar of the bound tools is over the size that may be compiled."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"The tool-call grammar for the bound tools is {size:,} bytes, over the limit of "
            f"{limit:,} bytes: its compile time grows as the square of its size, to minutes "
            "for a few MB. Bind fewer tools or parameters, turn constrained decoding off "
            "(constrained_decoding=False), or raise the limit with the environment variable "
            "TOOLACE_MAX_GRAMMAR_BYTES (0 lifts it)."
        )
