"""Grammar-constrained decoding of ToolACE's pythonic call lists with xgrammar.

:class:`GrammarConstraint` compiles the EBNF text of :func:`tool_call_grammar` (built in
:mod:`toolace_integrations.format.grammar_text`) for one tokenizer and hands out transformers logits
processors. xgrammar is an optional dependency imported only when a constraint is built.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from toolace_integrations.core.forking import reset_after_fork
from toolace_integrations.errors import GrammarUnavailableError
from toolace_integrations.format.grammar_text import max_grammar_bytes, tool_call_grammar
from toolace_integrations.format.parsing import CALL_WRAPPERS
from toolace_integrations.format.tools import FunctionSpec, ToolChoice

if TYPE_CHECKING:
    import xgrammar
    from transformers import LogitsProcessor as Processor
    from transformers import PreTrainedTokenizerBase

__all__ = ["GrammarConstraint", "max_grammar_bytes", "require_xgrammar", "tool_call_grammar"]

_MISSING_XGRAMMAR = (
    "Constrained decoding (constrained_decoding=True, the default) with bound tools needs "
    'xgrammar, which is not installed. Either install it: pip install "toolace-integrations'
    '[grammar]" (or pip install xgrammar); or pass constrained_decoding=False to the model, '
    "which then generates freely and only parses and validates the calls."
)


def require_xgrammar() -> None:
    """Raise unless xgrammar is installed; looks it up without importing it.

    Raises:
        GrammarUnavailableError: xgrammar is not installed (the message says both ways out).
    """
    if importlib.util.find_spec("xgrammar") is None:
        raise GrammarUnavailableError(_MISSING_XGRAMMAR)


logger = logging.getLogger(__name__)

_WRAPPERS = frozenset(text for pair in CALL_WRAPPERS for text in pair if text)
_WRAPPER_MARK = "\x00"  # strings and text never hold NUL: a wrapper token's spelling is its own


def _import_xgrammar() -> Any:
    try:
        import xgrammar
        import xgrammar.contrib.hf
    except ImportError as e:
        raise GrammarUnavailableError(_MISSING_XGRAMMAR) from e
    return xgrammar


class GrammarConstraint:
    """Compiled tool-call grammars for one tokenizer, as transformers logits processors.

    Example (``tests/test_grammar.py`` runs the same steps on a tiny model)::

        constraint = GrammarConstraint(tokenizer, model.config.vocab_size, [eot_id])
        processor = constraint.logits_processor(tools, ToolChoice("required"))
        model.generate(input_ids, logits_processor=[processor])

    Compiled grammars are cached by grammar text (LRU, ``cache_size`` entries, thread-safe;
    threads asking for a grammar being compiled wait for that one compile); processors are
    single-use, so ask for a new one for every ``generate()`` call. :meth:`precompile` compiles
    ahead, e.g. in the caller's thread, so the generating thread finds the grammar cached.

    Notes:
        On CPU xgrammar needs no ``triton`` (installing it with ``--no-deps`` works); on CUDA its
        processor masks logits with a triton kernel, which CUDA builds of torch ship with.
        Special tokens other than the stop tokens are never allowed, except a call wrapper
        token where the grammar's wrapper is spelled by :meth:`wrappers`.

    Raises:
        GrammarUnavailableError: xgrammar is not installed.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        vocab_size: int,
        stop_token_ids: Sequence[int],
        *,
        cache_size: int = 64,
    ) -> None:
        """Build the tokenizer's xgrammar info (``vocab_size``: the model's padded vocabulary)."""
        self._xgr = _import_xgrammar()
        info = self._xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids) or None
        )
        # xgrammar reads special tokens such as <|start_header_id|> as their literal text, so they
        # would be allowed inside strings and prose: an empty spelling makes it mask them. A call
        # wrapper token gets a spelling only a grammar's wrapper can match (see ``wrappers``).
        stop = set(info.stop_token_ids)
        added = getattr(tokenizer, "added_tokens_decoder", {})
        special = {i: t.content for i, t in added.items() if t.special and i not in stop}
        wrappers = _WRAPPERS.intersection(special.values())
        self._spelling = {text: _WRAPPER_MARK + text for text in wrappers}
        if special:
            info = self._xgr.TokenizerInfo(
                self._respelled(info.decoded_vocab, special),
                vocab_type=self._xgr.VocabType.RAW,
                vocab_size=info.vocab_size,
                stop_token_ids=list(stop),
                add_prefix_space=info.add_prefix_space,
            )
        self._compiler = self._xgr.GrammarCompiler(info, cache_enabled=False)
        self._cache: OrderedDict[str, xgrammar.CompiledGrammar] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._compiling: dict[str, Future[xgrammar.CompiledGrammar]] = {}
        reset_after_fork(self)

    def _respelled(self, decoded: Sequence[bytes], special: dict[int, str]) -> list[bytes]:
        """The vocabulary's bytes with special tokens masked and wrapper tokens marked.

        Ordinary tokens holding NUL are masked too (no grammar allows NUL in text or strings),
        so that only the wrapper token itself spells a wrapper's marked spelling.
        """
        mark = _WRAPPER_MARK.encode()
        vocab = [b"" if mark in token else token for token in decoded]
        for index, text in special.items():
            if index < len(vocab):
                vocab[index] = self._spelling.get(text, "").encode()
        return vocab

    def wrappers(self, call_wrappers: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """A profile's ``call_wrappers`` as a grammar for this tokenizer must spell them.

        A wrapper that is one special token (Llama-4's ``<|python_start|>``) is spelled so that
        only that token matches it, and nowhere else in the grammar; other text stays as it is.
        """
        return tuple(
            (self._spelling.get(opening, opening), self._spelling.get(closing, closing))
            for opening, closing in call_wrappers
        )

    def _after_fork(self) -> None:
        """In a forked child: the parent's compiling threads, and any lock they held, are gone."""
        self._lock = threading.Lock()
        self._compiling = {}

    def compile(self, grammar: str) -> xgrammar.CompiledGrammar:
        """Compile EBNF text, or return the cached (or being compiled) result for the same text."""
        with self._lock:
            if grammar in self._cache:
                self._cache.move_to_end(grammar)
                return self._cache[grammar]
            pending = self._compiling.get(grammar)
            if pending is None:
                mine: Future[xgrammar.CompiledGrammar] = Future()
                self._compiling[grammar] = mine
        if pending is not None:
            return pending.result()
        started = time.perf_counter()
        try:
            compiled: xgrammar.CompiledGrammar = self._compiler.compile_grammar(grammar)
        except BaseException as error:
            with self._lock:
                del self._compiling[grammar]
            mine.set_exception(error)
            raise
        with self._lock:
            del self._compiling[grammar]
            self._cache[grammar] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        logger.debug("grammar compiled in %.3f s (%d bytes of EBNF)",
                     time.perf_counter() - started, len(grammar))  # fmt: skip
        mine.set_result(compiled)
        return compiled

    def precompile(self, tools: Sequence[FunctionSpec], choice: ToolChoice) -> None:
        """Compile the grammar of ``tools`` and ``choice`` now, into the cache.

        Raises:
            GrammarTooLargeError: the grammar is over :func:`max_grammar_bytes`.
        """
        self.compile(tool_call_grammar(tools, choice))

    def clear_cache(self) -> None:
        """Forget every compiled grammar."""
        with self._lock:
            self._cache.clear()

    def logits_processor(self, tools: Sequence[FunctionSpec], choice: ToolChoice) -> Processor:
        """A new single-use processor constraining every batch row to the same grammar."""
        return self.batch_logits_processor([(tools, choice)])

    def batch_logits_processor(
        self, grammars: Sequence[tuple[Sequence[FunctionSpec], ToolChoice]]
    ) -> Processor:
        """A new single-use processor with one ``(tools, choice)`` grammar per batch row."""
        compiled = [self.compile(tool_call_grammar(tools, choice)) for tools, choice in grammars]
        processor: Processor = self._xgr.contrib.hf.LogitsProcessor(compiled)
        return processor
