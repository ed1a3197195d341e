"""Call wrapper tokens in the local grammar: allowed where a profile's model may write them.

Llama-4 may write its call list as ``<|python_start|>[...]<|python_end|>`` with the real control
tokens, and Llama-3.2 may start it with ``<|python_tag|>``. The grammar must accept those tokens
around the call list (and only there: never inside a string, in prose, or for a profile without
wrappers), while every other special token stays masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from toolace_integrations.core.encoding import text_encoder
from toolace_integrations.format.profiles import LLAMA_3_2, LLAMA_4, TOOLACE, PromptProfile
from toolace_integrations.format.tools import ToolChoice, normalize_tools
from toolace_integrations.local.grammar import GrammarConstraint, tool_call_grammar
from toolace_integrations.testing import llama3_tokenizer, make_tiny_toolace

xgrammar = pytest.importorskip("xgrammar")
transformers = pytest.importorskip("transformers")

TOOLS = normalize_tools(
    [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "required": ["a"],
                },
            },
        }
    ]
)
CHOICES = [ToolChoice("auto"), ToolChoice("required"), ToolChoice("named", name="f")]


class Vocabulary:
    """A tokenizer, its grammar constraint, and token-by-token acceptance."""

    def __init__(self, tokenizer: Any, end: str) -> None:
        self.tokenizer = tokenizer
        self.end = tokenizer.convert_tokens_to_ids(end)
        self.constraint = GrammarConstraint(tokenizer, len(tokenizer), [self.end])

    def id(self, token: str) -> int:
        found = self.tokenizer.convert_tokens_to_ids(token)
        assert isinstance(found, int) and token in self.tokenizer.get_vocab(), token
        return found

    def text(self, text: str) -> list[int]:
        """Ids of ``text`` as plain text (special-token text stays text, as the model's own)."""
        return text_encoder(self.tokenizer).content_ids(text)

    def accepts(self, profile: PromptProfile, choice: ToolChoice, ids: list[int]) -> bool:
        """Whether the profile's grammar takes ``ids`` then the end token, and ends there."""
        wrappers = self.constraint.wrappers(profile.call_wrappers)
        grammar = tool_call_grammar(TOOLS, choice, wrappers=wrappers)
        matcher = xgrammar.GrammarMatcher(self.constraint.compile(grammar))
        return all(matcher.accept_token(token) for token in [*ids, self.end]) and (
            matcher.is_terminated()
        )


@pytest.fixture(scope="module")
def llama4(tmp_path_factory: pytest.TempPathFactory) -> Vocabulary:
    folder = make_tiny_toolace(Path(tmp_path_factory.mktemp("tiny-llama4")), tokenizer="llama4")
    return Vocabulary(transformers.AutoTokenizer.from_pretrained(folder), "<|eot|>")


@pytest.fixture(scope="module")
def llama3() -> Vocabulary:
    return Vocabulary(llama3_tokenizer(), "<|eot_id|>")


@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: c.mode)
def test_llama4_call_wrapper_tokens_are_accepted_around_the_calls(
    llama4: Vocabulary, choice: ToolChoice
) -> None:
    start, end = llama4.id("<|python_start|>"), llama4.id("<|python_end|>")
    call = llama4.text('[f(a="x")]')
    assert llama4.accepts(LLAMA_4, choice, [start, *call, end])
    assert llama4.accepts(LLAMA_4, choice, call)  # the wrapper is optional
    assert not llama4.accepts(LLAMA_4, choice, [start, *call])  # opened, never closed
    assert not llama4.accepts(LLAMA_4, choice, [*call, end])


def test_llama4_wrapper_tokens_are_refused_anywhere_else(llama4: Vocabulary) -> None:
    start, end = llama4.id("<|python_start|>"), llama4.id("<|python_end|>")
    auto = ToolChoice("auto")
    inside = [*llama4.text('[f(a="x'), start, *llama4.text('")]')]
    assert not llama4.accepts(LLAMA_4, auto, inside)  # in a string value
    assert not llama4.accepts(LLAMA_4, auto, [*llama4.text("Hello"), start])  # in prose
    assert not llama4.accepts(LLAMA_4, auto, [start, *llama4.text("Hello"), end])  # around prose
    call = llama4.text('[f(a="x")]')
    assert not llama4.accepts(TOOLACE, auto, [start, *call, end])  # a profile without wrappers
    header = llama4.id("<|header_start|>")
    assert not llama4.accepts(LLAMA_4, auto, [header, *call])  # other specials stay masked


@pytest.mark.parametrize("profile", [LLAMA_4, TOOLACE], ids=lambda p: p.name)
def test_the_wrappers_spelled_out_are_neither_a_wrapper_nor_text(
    llama4: Vocabulary, profile: PromptProfile
) -> None:
    """The parsers read spelled-out wrapper text as calls, so the text branch must not take it
    (it would let a call through unchecked); only the real wrapper token opens calls."""
    spelled = llama4.text('<|python_start|>[f(a="x")]<|python_end|>')
    assert llama4.id("<|python_start|>") not in spelled  # plain-text tokens
    for mode in ("auto", "required"):
        assert not llama4.accepts(profile, ToolChoice(mode), spelled)
    assert llama4.accepts(profile, ToolChoice("auto"), llama4.text("<b>bold</b> and <| too"))


@pytest.mark.parametrize("choice", CHOICES, ids=lambda c: c.mode)
def test_llama32_python_tag_is_accepted_before_the_calls(
    llama3: Vocabulary, choice: ToolChoice
) -> None:
    tag = llama3.id("<|python_tag|>")
    call = llama3.text('[f(a="x")]')
    assert llama3.accepts(LLAMA_3_2, choice, [tag, *call])
    assert not llama3.accepts(TOOLACE, choice, [tag, *call])
    assert not llama3.accepts(LLAMA_3_2, choice, [*llama3.text('[f(a="'), tag, *llama3.text('")]')])


@pytest.mark.parametrize("choice", CHOICES[1:], ids=lambda c: c.mode)
def test_only_the_wrapper_token_spells_the_wrapper(llama3: Vocabulary, choice: ToolChoice) -> None:
    # The grammar marks a wrapper token's spelling with NUL; ordinary tokens must not write it.
    [(marked, _)] = llama3.constraint.wrappers(LLAMA_3_2.call_wrappers)
    assert marked != "<|python_tag|>"
    assert not llama3.accepts(LLAMA_3_2, choice, llama3.text(marked + '[f(a="x")]'))
