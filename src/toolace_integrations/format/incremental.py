"""Read a ToolACE answer as it streams: text or calls, and each call's name and JSON arguments.

:class:`CallStream` is fed the answer piece by piece and turns a call list into
:class:`CallDelta` records as it is written: a call's first delta carries its index, a minted id
and its name (once the ``(`` after the name is written), later ones carry pieces of
``json.dumps(arguments)`` -- a string value streams as it is written, other values when they end.
Segments, strings and brackets are found exactly as :func:`~toolace_integrations.format.parsing.
parse_tool_calls` finds them, each finished call is parsed by the same code, and
:meth:`CallStream.finish` gives the final parse the streamed ids, so the deltas of a call sum to
the arguments of the call the final parse returns. Each character is read once.

Notes:
    Only calls of bound tools stream. A call that starts with a positional argument, or whose
    value cannot be read as a literal, stops streaming (its last delta, at the end, completes it
    if it turns out valid). Fenced and bare calls do not stream; the final parse still finds
    them. With ``parallel=False`` only the first call streams. Where a grammar-constrained
    answer may end early is :class:`~toolace_integrations.format.closing.Closer`'s to tell.
    Each piece of text is copied once; a value is parsed when it ends and a call when it ends
    (with the parser's own code), so the work stays linear in the answer's length.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from toolace_integrations.format.calls import (
    CallDelta,
    InvalidCall,
    ParsedOutput,
    ToolCall,
    mint_id,
)
from toolace_integrations.format.literals import MAX_DEPTH, Reject, decodable_length, literal_value
from toolace_integrations.format.names import is_argument_name
from toolace_integrations.format.parsing import CALL_WRAPPERS, _parse_call
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

__all__ = ["CallDelta", "CallStream"]

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.- ")
_NAME_END = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_OPENINGS = tuple(opening for opening, _ in CALL_WRAPPERS)


@dataclass
class _Segment:
    index: int
    start: int
    id: str | None = None
    name: str | None = None
    args_at: int = -1  # position after the call's "(" (-1: not reached)
    emitted: list[str] = field(default_factory=list)  # pieces of the JSON sent so far
    frozen: bool = False
    phase: str = "head"  # head, eq, value, done
    arg_start: int = -1
    eq_at: int = -1
    value_start: int = -1
    value_emitted: list[str] = field(default_factory=list)  # those of the current value
    string_at: int = -1  # content start of the value's streamed string (-1: none)
    decoded_to: int = -1
    outcome: ToolCall | InvalidCall | None = None
    skipped: bool = False

    @property
    def streaming(self) -> bool:
        return self.id is not None and not self.frozen


class CallStream:
    """Follows one streamed answer (see the module docstring).

    Args:
        tools: The bound tools.
        choice: The tool choice (``parallel=False``: only the first call streams).
    """

    def __init__(self, tools: Sequence[FunctionSpec], choice: ToolChoice | None = None) -> None:
        self._specs = {tool.name: tool for tool in tools}
        self._parallel = choice is None or choice.parallel
        self.mode = "undecided"  # then "calls", "text", "bare" (a bare call) or "fence"
        self._text = ""
        self._lead = ""  # the first non-blank characters, then the last two (fence, bare name)
        self._wrapper = ""  # the call wrapper's opening read so far (``<|python_start|>``)
        self._wrapped = False  # a whole opening was read: what follows is decided afresh
        self._bare_call = False  # the text starts ``name(``: a bare call, held to the end
        self._stack: list[str] = []
        self._quote = ""  # the open string's delimiter
        self._escape = False
        self._run = 0  # closing quotes seen in a row (triple-quoted strings)
        self._opening = ""  # quotes of a string being opened ('"' or '""')
        self._opening_at = -1
        self._segments: list[_Segment] = []
        self._closed = False
        self._deltas: list[CallDelta] = []

    @property
    def may_be_call(self) -> bool:
        """Whether the answer so far may still turn out to be a call list (hold it back)."""
        if self.mode in ("calls", "fence"):
            return True
        if self.mode == "bare":
            return self._bare_call or self._lead[-1] in _NAME_END
        return self.mode == "undecided"

    def feed(self, text: str) -> list[CallDelta]:
        """Read the next piece of the answer; returns the call pieces it completes."""
        start = len(self._text)
        whole, self._text = self._text, ""  # one reference left: the append is in place
        whole += text
        self._text = whole
        for position in range(start, len(self._text)):
            if self.mode == "text" or self._closed:
                break
            char = self._text[position]
            if self.mode == "calls":
                self._scan(char, position)
            else:
                self._decide(char, position)
        segment = self._segments[-1] if self._segments else None
        if segment is not None and segment.string_at >= 0 and self._quote:
            self._decode(segment, len(self._text))
        deltas, self._deltas = self._deltas, []
        return deltas

    def finish(self, parsed: ParsedOutput) -> tuple[ParsedOutput, list[CallDelta]]:
        """Give ``parsed`` (the final parse of the whole answer) the streamed ids.

        Returns the parse and the last call pieces: the rest of each streamed call that is
        valid, an ``error`` piece for each one that is not, and whole calls that never streamed.
        """
        calls, invalid = list(parsed.calls), list(parsed.invalid)
        pieces: list[CallDelta] = []
        at_call = at_invalid = 0
        used = {s.index for s in self._segments if s.id is not None}
        fresh = max(used, default=-1) + 1
        for segment in self._segments if self.mode == "calls" else ():
            if segment.skipped:
                continue
            last = segment is self._segments[-1] and segment.outcome is None
            outcome = segment.outcome
            valid = isinstance(outcome, ToolCall) or (
                last and at_call < len(calls) and calls[at_call].name == segment.name
            )
            if valid and at_call < len(calls):
                call = calls[at_call]
                if segment.id is not None:
                    calls[at_call] = call = replace(call, id=segment.id)
                    full, sent = json.dumps(call.arguments), "".join(segment.emitted)
                    if full.startswith(sent) and full != sent:
                        rest = full[len(sent) :]
                        pieces.append(CallDelta(segment.index, call.id, None, rest))
                at_call += 1
            elif not valid and at_invalid < len(invalid):
                if segment.id is not None:
                    invalid[at_invalid] = failed = replace(invalid[at_invalid], id=segment.id)
                    pieces.append(CallDelta(segment.index, segment.id, None, "", failed.error))
                at_invalid += 1
        streamed = {piece.id for piece in pieces} | {s.id for s in self._segments if s.id}
        for call in calls:
            if call.id not in streamed:
                pieces.append(CallDelta(fresh, call.id, call.name, json.dumps(call.arguments)))
                fresh += 1
        return ParsedOutput(parsed.content, calls, invalid), pieces

    # -- deciding what the answer is ------------------------------------------------------

    def _decide(self, char: str, position: int) -> None:
        """Before a call list starts: whitespace, then ``[``, a fence, a bare call or text.

        A call wrapper's opening (:data:`~toolace_integrations.format.parsing.CALL_WRAPPERS`)
        may come first, as the parser reads it; the decision starts again after it.
        """
        if self.mode == "fence" or self._bare_call or (not self._lead and char.isspace()):
            return
        if not self._lead and not self._wrapped and self._opens_wrapper(char):
            return
        first = not self._lead
        self._lead = (self._lead + char)[-3:]
        if first and char == "[":
            self.mode = "calls"
            self._segments.append(_Segment(0, position + 1))
        elif self._lead[0] == "`":
            self.mode = "fence" if self._lead == "```" else "undecided"
            if not "```".startswith(self._lead):
                self.mode = "text"
        elif first:
            self.mode = "bare" if char in _NAME_END and not char.isdigit() else "text"
        elif char == "(" and self._lead[-2] in _NAME_END:
            self._bare_call = True
        elif char not in _NAME_CHARS:
            self.mode = "text"

    def _opens_wrapper(self, char: str) -> bool:
        """Whether ``char`` goes on with a wrapper's opening (text if the opening breaks off)."""
        read = self._wrapper + char
        if not any(opening.startswith(read) for opening in _OPENINGS):
            if self._wrapper:
                self.mode = "text"
            return bool(self._wrapper)
        self._wrapper, self._wrapped = ("", True) if read in _OPENINGS else (read, False)
        return True

    # -- scanning a call list, the way parsing._split does --------------------------------

    def _scan(self, char: str, position: int) -> None:
        if self._opening:
            self._open_string(char, position)
            return
        if self._quote:
            self._in_string(char, position)
            return
        segment = self._segments[-1]
        if segment.phase == "eq":
            self._confirm_key(segment, char, position)
        if char in "\"'":
            self._opening, self._opening_at = char, position
        elif char in "([{":
            self._stack.append(char)
            if len(self._stack) > MAX_DEPTH:
                self._closed = True  # parsing gives up here too: the segment is invalid
            if char == "(" and len(self._stack) == 1 and segment.args_at < 0:
                self._start_call(segment, position)
        elif char in ")]}" and self._stack:
            self._stack.pop()
            if not self._stack and segment.args_at >= 0 and segment.phase != "done":
                self._end_argument(segment, position, last=True)
        elif char == "]":
            self._end_segment(segment, position, last=True)
            self._closed = True
        elif char == "," and not self._stack:
            self._end_segment(segment, position, last=False)
            self._segments.append(_Segment(segment.index + 1, position + 1))
        elif len(self._stack) == 1 and segment.args_at >= 0 and segment.phase != "done":
            self._argument_char(segment, char, position)

    def _open_string(self, char: str, position: int) -> None:
        quote = self._opening[0]
        if char == quote and len(self._opening) == 1:
            self._opening += char
            return
        if char == quote:  # a third quote: a triple-quoted string
            self._opening, self._quote, self._run = "", quote * 3, 0
            return
        if len(self._opening) == 2:  # "" is an empty string, then ``char`` outside it
            self._opening = ""
            self._string_closed(position)
            self._scan(char, position)
            return
        self._opening, self._quote, self._escape = "", quote, False
        segment = self._segments[-1]
        direct = segment.phase == "value" and len(self._stack) == 1  # the value is this string
        if (
            segment.streaming
            and direct
            and not self._text[segment.value_start : self._opening_at].strip()
        ):
            segment.string_at = segment.decoded_to = self._opening_at + 1
            self._emit(segment, '"', value=True)
        self._in_string(char, position)

    def _in_string(self, char: str, position: int) -> None:
        if self._escape:
            self._escape = False
        elif char == "\\":
            self._escape, self._run = True, 0
        elif len(self._quote) == 1 and char == self._quote:
            self._quote = ""
            self._string_closed(position)
        elif len(self._quote) == 3 and char == self._quote[0]:
            self._run += 1
            if self._run == 3:
                self._quote = ""
        else:
            self._run = 0

    def _string_closed(self, position: int) -> None:
        segment = self._segments[-1]
        if segment.string_at >= 0:
            self._decode(segment, position)
            segment.string_at = -1

    # -- calls and arguments --------------------------------------------------------------

    def _start_call(self, segment: _Segment, position: int) -> None:
        segment.args_at = segment.arg_start = position + 1
        name = self._text[segment.start : position].strip()
        if name in self._specs and (self._parallel or segment.index == 0):
            segment.id, segment.name = mint_id(), name
            self._deltas.append(CallDelta(segment.index, segment.id, name))

    def _argument_char(self, segment: _Segment, char: str, position: int) -> None:
        if char == "," and segment.phase != "done":
            self._end_argument(segment, position, last=False)
            segment.phase, segment.arg_start = "head", position + 1
        elif segment.phase == "head" and char == "=":
            segment.phase, segment.eq_at = "eq", position
        elif segment.phase == "head" and not (char.isspace() or char in _NAME_END):
            segment.frozen = True  # a positional argument (or none that parses)

    def _confirm_key(self, segment: _Segment, char: str, position: int) -> None:
        key = self._text[segment.arg_start : segment.eq_at].strip()
        segment.phase, segment.value_start, segment.value_emitted = "value", segment.eq_at + 1, []
        if char == "=" or not is_argument_name(key):
            segment.frozen = True
            return
        self._emit(segment, ("{" if not segment.emitted else ", ") + json.dumps(key) + ": ")

    def _end_argument(self, segment: _Segment, position: int, *, last: bool) -> None:
        phase = segment.phase
        segment.phase = "done" if last else phase
        if not segment.streaming:
            return
        if phase != "value":
            if self._text[segment.arg_start : position].strip():
                segment.frozen = True  # a positional argument, or a dangling "="
            return
        value = literal_value(self._text[segment.value_start : position])
        piece, sent = (
            None if value is None else json.dumps(value[0]),
            "".join(segment.value_emitted),
        )
        if piece is None or not piece.startswith(sent):
            segment.frozen = True
            return
        self._emit(segment, piece[len(sent) :], value=True)

    def _end_segment(self, segment: _Segment, position: int, *, last: bool) -> None:
        text = self._text[segment.start : position].strip()
        if not text:
            segment.skipped = last  # parsing skips an empty last entry
            if not last:
                segment.outcome = InvalidCall("", "empty entry between commas")
            return
        try:
            segment.outcome = call = _parse_call(text, self._specs)
        except Reject as reject:
            segment.outcome = InvalidCall(text, str(reject), reject.name)
            return
        full, sent = json.dumps(call.arguments), "".join(segment.emitted)
        if segment.id is not None and full.startswith(sent):
            rest, segment.emitted = full[len(sent) :], [full]
            if rest:
                self._deltas.append(CallDelta(segment.index, segment.id, None, rest))
        segment.frozen = True  # complete: nothing more to stream

    def _emit(self, segment: _Segment, piece: str, *, value: bool = False) -> None:
        if not piece or segment.id is None or segment.frozen:
            return
        segment.emitted.append(piece)
        if value:
            segment.value_emitted.append(piece)
        self._deltas.append(CallDelta(segment.index, segment.id, None, piece))

    def _decode(self, segment: _Segment, end: int) -> None:
        """Stream the string value's content up to ``end``, stopping before a partial escape."""
        if not segment.streaming:
            return
        raw = self._text[segment.decoded_to : end]
        cut = decodable_length(raw)
        if cut == 0:
            return
        quote = self._text[segment.string_at - 1]
        value = literal_value(quote + raw[:cut] + quote)
        if value is None or not isinstance(value[0], str):
            segment.frozen = True
            return
        segment.decoded_to += cut
        self._emit(segment, json.dumps(value[0])[1:-1], value=True)
