"""Streaming text from token ids: incremental decoding and stop strings, each linear in length."""

from __future__ import annotations

import random
import threading

import pytest

from toolace_integrations.core.encoding import load_tokenizer
from toolace_integrations.format.stops import StopScanner, cut_at_stop
from toolace_integrations.local.decoding import IncrementalDetokenizer, RowDecoder


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path: str) -> object:
    return load_tokenizer(tiny_model_path, None)


def test_incremental_text_equals_one_decode_of_all_ids(tokenizer: object) -> None:
    texts = ["Hello world, here's ünïcødé 🚀 and 中文字符 mixed in.", "  two  spaces\n\nand lines"]
    vocab = len(tokenizer)  # type: ignore[arg-type]
    rng = random.Random(0)
    samples = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]  # type: ignore[operator]
    samples += [[rng.randrange(vocab) for _ in range(200)] for _ in range(20)]
    for ids in samples:
        detokenizer = IncrementalDetokenizer(tokenizer)
        streamed = "".join(detokenizer.push(i) for i in ids)
        whole = tokenizer.decode(ids, skip_special_tokens=True)  # type: ignore[attr-defined]
        # Text still waiting for the rest of a character is never shown.
        assert whole.startswith(streamed) and whole[len(streamed) :].strip("\ufffd") == ""


def test_decoding_cost_per_token_does_not_grow_with_the_answer(tokenizer: object) -> None:
    calls: list[int] = []
    decode = tokenizer.decode  # type: ignore[attr-defined]

    class Counting:
        def decode(self, ids: list[int], **kwargs: object) -> str:
            calls.append(len(ids))
            return str(decode(ids, **kwargs))

    detokenizer = IncrementalDetokenizer(Counting())
    ids = tokenizer("word " * 2000, add_special_tokens=False)["input_ids"]  # type: ignore[operator]
    for token in ids:
        detokenizer.push(token)
    assert max(calls) <= 8, "each token re-decoded a growing list of ids"


@pytest.mark.parametrize("seed", range(30))
def test_stop_scanner_equals_cutting_the_whole_text(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab\nU:ser"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 80)))
    stops = ["\nUser:", "bb", "ss"][: rng.randrange(0, 4)]
    scanner = StopScanner(stops)
    shown = ""
    position = 0
    while position < len(text):
        size = rng.randrange(1, 6)
        shown += scanner.feed(text[position : position + size])
        position += size
    shown += scanner.flush()
    expected, found = cut_at_stop(text, stops)
    assert (shown, scanner.stopped) == (expected, found)
    assert scanner.text == shown


def test_row_decoder_finishes_on_end_token_stop_string_budget_or_halt(tokenizer: object) -> None:
    ids = tokenizer(" one two three four", add_special_tokens=False)["input_ids"]  # type: ignore[operator]

    def run(stop: tuple[str, ...] = (), budget: int = 99, halt_at: int = -1) -> RowDecoder:
        halt = threading.Event()
        decoder = RowDecoder(tokenizer, stop, [7], budget, halt)
        for index, token in enumerate([*ids, 7, *ids]):
            if index == halt_at:
                halt.set()
            decoder.push(token)
        return decoder

    ended = run()
    assert (ended.text, ended.finish, len(ended.tokens)) == (
        " one two three four",
        "stop",
        len(ids) + 1,
    )
    cut = run(stop=(" three",))
    assert (cut.text, cut.finish) == (" one two", "stop")
    short = run(budget=2)
    assert (short.finish, len(short.tokens)) == ("length", 2)
    halted = run(halt_at=1)
    assert (halted.finish, len(halted.tokens)) == ("stop", 1)


def test_stop_strings_and_scheduling_import_no_torch() -> None:
    """The remote backend shares these modules, and the HTTP client must not load torch."""
    import subprocess
    import sys

    code = (
        "import sys; import toolace_integrations.format.stops; "
        "import toolace_integrations.core.scheduling; "
        "import toolace_integrations.local.decoding; print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
