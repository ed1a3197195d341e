"""Where a grammar-constrained call list may honestly end early, and the text that ends it.

:class:`Closer` reads a forced answer (``[name(arg=value, ...), ...]``, as the tool-call grammar
of :mod:`toolace_integrations.format.grammar_text` writes it) one character at a time and tells,
at each point, where the answer can end with nothing cut or invented: right after a complete
call, or right after a complete argument value once every required argument of the open call is
written. The closing then only closes the call and the list (``)]`` or ``]``) and drops the
separators the model wrote after that point; it never writes a value. Where no such point is
left (a value is being written), :meth:`Closer.ending` is ``None``: an answer cut there is a
truncated answer, not one to finish.

Notes:
    Argument names, order and required flags come from
    :func:`~toolace_integrations.format.grammar_text.call_arguments`, the grammar's own reading of
    the tools. Values are only scanned for where they end (strings, brackets), so unions,
    ``$ref``s and bounds need no second reading of schemas. A bare number is complete only once a
    ``,`` or ``)`` follows it (``1`` may become ``12``); ``True``, ``False`` and ``None`` are
    complete as written. Text the grammar would not produce ends the tracking. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from toolace_integrations.format.grammar_text import call_arguments
from toolace_integrations.format.schema import to_json_schema
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

__all__ = ["Closer"]

_COMPLETE_WORDS = frozenset({"True", "False", "None"})


class Closer:
    """Follows a forced call list and knows where it may end early, and how.

    Args:
        tools: The bound tools.
        choice: The tool choice the grammar enforces (``required``/``named``: calls only).

    Example:
        >>> from toolace_integrations.format.tools import normalize_tools
        >>> tools = normalize_tools([{"name": "f", "parameters": {"type": "object",
        ...     "properties": {"a": {"type": "string"}, "n": {"type": "integer"}},
        ...     "required": ["a"]}}])
        >>> closer = Closer(tools, ToolChoice("required"))
        >>> closer.feed('[f(a="x')
        >>> closer.ending() is None  # the value of a may go on
        True
        >>> closer.feed('", n=12')
        >>> closer.ending() is None  # so may 12
        True
        >>> closer.feed(',')  # it is complete: end as '[f(a="x", n=12' + ')]'
        >>> closer.ending()
        (14, ')]')
    """

    def __init__(self, tools: Sequence[FunctionSpec], choice: ToolChoice) -> None:
        self._arguments = {
            tool.name: [(name, required) for name, _, required in call_arguments(schema)]
            for tool in tools
            if choice.mode != "named" or tool.name == choice.name
            for schema in [to_json_schema(tool.parameters)]
        }
        self._parallel = choice.parallel
        self._phase = "start" if self._arguments else "lost"
        self._name = ""  # the call name written so far (phase "name")
        self._entries: list[tuple[str, bool]] = []  # the open call's arguments
        self._last = -1  # index of the open call's last argument written (or being written)
        self._head = ""  # the argument name written so far (phase "head")
        self._brackets = 0  # open brackets inside the value being written
        self._in_string = False
        self._escaped = False
        self._bare = ""  # an unquoted scalar value at the argument's top level
        self._length = 0  # characters read
        self._calls = 0  # complete calls

    @property
    def done(self) -> bool:
        """Whether the call list is complete (its ``]`` was read)."""
        return self._phase == "done"

    def feed(self, text: str) -> None:
        """Read more of the answer."""
        for char in text:
            if self._phase == "lost":
                return
            self._length += 1
            if not self._read(char):
                self._phase = "lost"

    def ending(self) -> tuple[int, str] | None:
        """Where and how the answer read so far may end: ``text[:at] + closing``, or ``None``.

        The end is the last point where a call or an argument value was complete, with only
        separators the model wrote after it (``,``, ``, ``: a number is known complete once
        one follows it) dropped; the closing is ``"]"`` after a call, ``")]"`` after an
        argument value or an open call's ``(`` once no required argument is missing, ``""``
        when the list is complete. ``None`` where ending here would cut or invent.
        """
        phase, at = self._phase, self._length
        if phase == "done":
            return at, ""
        if phase in ("between", "call-comma") or (phase == "name" and self._calls):
            back = {"between": 0, "call-comma": 1}.get(phase, 2)
            return (at - back, "]") if phase != "name" or not self._name else None
        if self._missing():
            return None
        if phase in ("open", "after") or (phase == "value" and self._bare in _COMPLETE_WORDS):
            return at, ")]"
        if phase == "comma" or (phase == "head" and not self._head):
            return at - (1 if phase == "comma" else 2), ")]"
        return None

    # -- reading ---------------------------------------------------------------------------

    def _missing(self) -> bool:
        """Whether a required argument after the last one written is still to come."""
        return any(required for _, required in self._entries[self._last + 1 :])

    def _read(self, c: str) -> bool:
        phase = self._phase
        if phase == "start":
            self._phase, self._name = "name", ""
            return c == "["
        if phase == "name":
            return self._read_name(c)
        if phase == "open":  # right after the call's "("
            if c == ")":
                return self._end_call()
            self._phase, self._head = "head", ""
            return self._read_head(c)
        if phase == "head":
            return self._read_head(c)
        if phase == "value":
            return self._read_value(c)
        if phase == "after":  # a value ended: another argument or the call's end
            return self._after_value(c)
        if phase == "comma":
            self._phase, self._head = "head", ""
            return c == " "
        if phase == "between":  # after a call: another one or the list's end
            if c == "]":
                self._phase = "done"
                return True
            self._phase = "call-comma"
            return c == "," and self._parallel
        if phase == "call-comma":
            self._phase, self._name = "name", ""
            return c == " "
        return False  # nothing follows the list's "]"

    def _read_name(self, c: str) -> bool:
        self._name += c
        if c == "(" and self._name[:-1] in self._arguments:
            self._entries = self._arguments[self._name[:-1]]
            self._phase, self._last = "open", -1
            return True
        return any((name + "(").startswith(self._name) for name in self._arguments)

    def _read_head(self, c: str) -> bool:
        if c != "=":
            self._head += c
            return True
        for index in range(self._last + 1, len(self._entries)):
            name, required = self._entries[index]
            if name == self._head:
                self._last, self._phase = index, "value"
                self._brackets, self._in_string, self._escaped, self._bare = 0, False, False, ""
                return True
            if required:  # the grammar never skips a required argument
                return False
        return False

    def _read_value(self, c: str) -> bool:
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif c == "\\":
                self._escaped = True
            elif c == '"':
                self._in_string = False
                if not self._brackets:
                    self._phase = "after"
            return True
        if c == '"' and not self._bare:
            self._in_string = True
        elif c in "[{" and not self._bare:
            self._brackets += 1
        elif c in "]}" and self._brackets:
            self._brackets -= 1
            if not self._brackets:
                self._phase = "after"
        elif self._brackets:
            pass  # inside a list or dict: only strings and brackets matter
        elif c in ",)" and self._bare:
            return self._after_value(c)
        else:
            self._bare += c
        return True

    def _after_value(self, c: str) -> bool:
        if c == ",":
            self._phase = "comma"
            return True
        return c == ")" and self._end_call()

    def _end_call(self) -> bool:
        if self._missing():
            return False
        self._phase, self._calls = "between", self._calls + 1
        return True
