"""The text encoder gives transformers' own ids, for the toy and the real Llama-3.1 tokenizer.

:class:`~toolace_integrations.core.encoding.TextEncoder` encodes with private copies of the
tokenizer's Rust backend instead of calling the tokenizer (whose ``split_special_tokens`` flips a
shared flag); these properties check that nothing else changed: on random text, spelled special
tokens, unicode and whitespace included, its ids equal ``tokenizer(text,
add_special_tokens=False, split_special_tokens=...)`` run alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import ByT5Tokenizer

from toolace_integrations.core.encoding import PromptEncoder, load_tokenizer, text_encoder
from toolace_integrations.errors import ModelLoadError
from toolace_integrations.testing import checkpoints

PIECES = [
    *checkpoints.LLAMA3_SPECIAL_TOKENS,
    "<|reserved_special_token_7|>", "<|", "|>", "<|eot_id", "eot_id|>", "<<|eot_id|>>",
    " ", "  ", "\n", "\n\n", "\r\n", "\t", "\xa0", "\u3000", "\u2028", "\x1e", "\x00",
    "año", "北京", "🙂", "e\u0301", "ﬁ", "[get_weather(city=\"Paris\")]", "12345", "'s", "'LL",
]  # fmt: skip

TEXTS = st.lists(
    st.one_of(
        st.sampled_from(PIECES),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=8),  # no lone surrogates
    ),
    max_size=12,
).map("".join)


@pytest.fixture(scope="module", params=["toy", "llama3"])
def tokenizer(request: pytest.FixtureRequest, tiny_model_path: str) -> Any:
    if request.param == "toy":
        return load_tokenizer(tiny_model_path)
    return checkpoints.llama3_tokenizer()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TEXTS)
def test_ids_equal_the_tokenizers_own(tokenizer: Any, text: str) -> None:
    encoder = text_encoder(tokenizer)
    for split, ids in ((True, encoder.content_ids(text)), (False, encoder.template_ids(text))):
        own = tokenizer(text, add_special_tokens=False, split_special_tokens=split)["input_ids"]
        assert ids == own, f"split_special_tokens={split}"


def test_special_token_text_is_plain_in_content_and_a_control_token_in_template(
    tokenizer: Any,
) -> None:
    encoder = text_encoder(tokenizer)
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert encoder.template_ids("<|eot_id|>") == [eot]
    assert eot not in encoder.content_ids("<|eot_id|>")
    assert tokenizer.decode(encoder.content_ids("a<|eot_id|>b")) == "a<|eot_id|>b"


def test_one_encoder_per_tokenizer_and_the_tokenizer_left_as_it_was(tokenizer: Any) -> None:
    flag = tokenizer.backend_tokenizer.encode_special_tokens
    assert text_encoder(tokenizer) is PromptEncoder(tokenizer).text
    text_encoder(tokenizer).content_ids("<|eot_id|>")
    assert tokenizer.backend_tokenizer.encode_special_tokens == flag


def test_a_tokenizer_without_a_fast_backend_is_refused_with_advice() -> None:
    with pytest.raises(ModelLoadError, match="no fast tokenizer backend.*tokenizer.json"):
        PromptEncoder(ByT5Tokenizer())
