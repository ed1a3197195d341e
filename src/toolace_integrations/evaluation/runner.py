"""BFCL entries asked through an adapter, as a user's agent asks, answers scored as BFCL does.

Each entry's functions are bound as OpenAI tools (``ChatToolACE.bind_tools`` or
``ToolACELLM.achat_with_tools``), its question sent with ``ainvoke``/``achat_with_tools``
concurrently (so the local scheduler or the server batches them), greedily. What gets scored is
what a user's code sees: the answer's calls, its invalid call attempts and its text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from toolace_integrations.errors import ToolACEError
from toolace_integrations.evaluation.data import RELEVANCE_CATEGORIES, Entry, openai_tools
from toolace_integrations.evaluation.scoring import Call, Verdict, check_ast, check_relevance

__all__ = ["Answer", "Framework", "Record", "answer_function", "read_records", "run_entries"]

Framework = Literal["langchain", "llama-index"]


@dataclass(frozen=True)
class Answer:
    """What the adapter returned for one entry.

    Attributes:
        calls: the valid calls, ``(name, arguments)`` in the order written.
        invalid: the call attempts the parser rejected, ``{"name", "args", "error"}``.
        text: the answer's text content.
        raw: the model's whole output text.
        prompt_tokens: the prompt's length in tokens.
    """

    calls: list[Call]
    invalid: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    raw: str = ""
    prompt_tokens: int = 0


@dataclass(frozen=True)
class Record:
    """One line of the results file: an entry, its answer and BFCL's verdict on it."""

    id: str
    category: str
    valid: bool
    error_type: str
    error: str
    prompt_tokens: int
    raw_answer: str
    calls: list[dict[str, Any]]
    invalid_calls: list[dict[str, Any]]
    text: str


AnswerFunction = Callable[[Entry], Awaitable[Answer]]


def score(entry: Entry, answer: Answer) -> Verdict:
    """BFCL's verdict on ``answer``; a rejected call attempt is a failed decode, as in BFCL."""
    if entry.category in RELEVANCE_CATEGORIES:
        return check_relevance([] if answer.invalid else answer.calls, entry.category)
    if answer.invalid:
        problem = answer.invalid[0]
        return Verdict(
            False, "ast_decoder:decoder_failed", f"{problem['name']}: {problem['error']}"
        )
    if not answer.calls:
        return Verdict(False, "ast_decoder:decoder_failed", "answered in text, no call")
    return check_ast(entry.functions, answer.calls, entry.ground_truth, entry.category)


def answer_function(llm: Any, framework: Framework, tool_choice: str = "auto") -> AnswerFunction:
    """A coroutine function asking ``llm`` (``ChatToolACE`` or ``ToolACELLM``) one entry."""
    if framework == "langchain":
        return lambda entry: _ask_langchain(llm, entry, tool_choice)
    return lambda entry: _ask_llama_index(llm, entry, tool_choice)


async def _ask_langchain(llm: Any, entry: Entry, tool_choice: str) -> Answer:
    bound = llm.bind_tools(openai_tools(entry.functions, entry.category), tool_choice=tool_choice)
    message = await bound.ainvoke([dict(message) for message in entry.messages])
    usage = message.usage_metadata or {}
    return Answer(
        calls=[(call["name"], call["args"]) for call in message.tool_calls],
        invalid=[
            {"name": call["name"], "args": call["args"], "error": call["error"]}
            for call in message.invalid_tool_calls
        ],
        text=message.text,
        raw=message.response_metadata.get("raw_output", ""),
        prompt_tokens=usage.get("input_tokens", 0),
    )


async def _ask_llama_index(llm: Any, entry: Entry, tool_choice: str) -> Answer:
    from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock

    history = [ChatMessage(role=m["role"], content=m["content"]) for m in entry.messages]
    response = await llm.achat_with_tools(
        openai_tools(entry.functions, entry.category),
        chat_history=history,
        allow_parallel_tool_calls=True,
        tool_choice=tool_choice,
    )
    message = response.message
    raw = response.raw if isinstance(response.raw, Mapping) else {}
    return Answer(
        calls=[
            (block.tool_name, _kwargs(block.tool_kwargs))
            for block in message.blocks
            if isinstance(block, ToolCallBlock)
        ],
        invalid=[
            {"name": call["name"], "args": call["text"], "error": call["error"]}
            for call in message.additional_kwargs.get("invalid_tool_calls") or ()
        ],
        text=message.content or "",
        raw=str(raw.get("text", "")),
        prompt_tokens=int(raw.get("usage", {}).get("prompt_tokens", 0)),
    )


def _kwargs(arguments: dict[str, Any] | str) -> dict[str, Any]:
    """A ``ToolCallBlock``'s arguments (a dict, or their JSON text)."""
    return arguments if isinstance(arguments, dict) else dict(json.loads(arguments or "{}"))


async def run_entries(
    entries: Sequence[Entry],
    ask: AnswerFunction,
    *,
    concurrency: int,
    out: Path,
    progress: Callable[[Record], None] = lambda record: None,
) -> list[Record]:
    """Ask and score ``entries``, ``concurrency`` at a time, appending each record to ``out``.

    A generation error (a prompt longer than the context window, a server failure) is that
    entry's verdict, recorded with its message; the run goes on. Records are written as they
    finish, so an interrupted run keeps what it scored (see :func:`read_records`).
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(entry: Entry) -> Record:
        async with gate:
            try:
                answer = await ask(entry)
            except ToolACEError as error:
                return _record(entry, Answer([]), Verdict(False, "generation_error", str(error)))
        return _record(entry, answer, score(entry, answer))

    records = []
    cut = out.is_file() and not out.read_bytes().endswith(b"\n") and out.stat().st_size > 0
    with out.open("a", encoding="utf-8") as sink:
        if cut:  # an interrupted run's half line: end it so the next record stands alone
            sink.write("\n")
        tasks = [asyncio.ensure_future(one(entry)) for entry in entries]  # asked in this order
        for finished in asyncio.as_completed(tasks):
            record = await finished
            sink.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
            sink.flush()
            records.append(record)
            progress(record)
    return records


def _record(entry: Entry, answer: Answer, verdict: Verdict) -> Record:
    return Record(
        id=entry.id,
        category=entry.category,
        valid=verdict.valid,
        error_type=verdict.error_type,
        error=verdict.error,
        prompt_tokens=answer.prompt_tokens,
        raw_answer=answer.raw,
        calls=[{"name": name, "arguments": dict(arguments)} for name, arguments in answer.calls],
        invalid_calls=answer.invalid,
        text=answer.text,
    )


def read_records(path: Path, ids: Iterable[str] | None = None) -> list[Record]:
    """The records of an earlier run in ``path`` (only those of ``ids`` when given).

    A last line cut by an interruption is dropped, so its entry is asked again.
    """
    wanted = None if ids is None else set(ids)
    records: dict[str, Record] = {}
    if not path.is_file():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = Record(**json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        if wanted is None or record.id in wanted:
            records[record.id] = record
    return list(records.values())
