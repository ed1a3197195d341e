"""How well the demo model calls its tools, measured on held-out questions (not a test).

Training gives different weights on different machines, so the demo's tests only check the
plumbing; this module is where its quality is measured: the CLI's ``demo --evaluate N`` and
``benchmarks/bench_demo_model.py`` report it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from toolace_integrations.demo.dialogs import sample_dialog, tool_renderings


@dataclass(frozen=True)
class DemoScore:
    """Held-out accuracy of the demo model.

    Attributes:
        tools: Share of questions answered by calling the expected tool (and only it).
        calls: Share whose constrained call list equals the expected one exactly.
        answers: Share of final answers (after the true tool result) equal to the expected text.
        later_turns: Share of second questions, asked after a whole first exchange, whose call
            equals the expected one exactly.
        questions: How many questions were asked.
    """

    tools: float
    calls: float
    answers: float
    later_turns: float
    questions: int


def evaluate_demo_model(
    path: str | Path, *, questions: int = 50, seed: int = 12345, base_url: str | None = None
) -> DemoScore:
    """Score the model on tool questions from :func:`sample_dialog` drawn with another seed.

    Decoding is greedy and grammar-constrained (``tool_choice="auto"``), as in the CLI demo;
    the tool renderings rotate through every way the frameworks wrap the demo tools.
    ``base_url`` scores the model a vLLM server serves as ``path``.
    """
    from toolace_integrations.backends import connect
    from toolace_integrations.core.chat import build_request, run_chat
    from toolace_integrations.core.generation import SamplingParams

    backend = connect(str(path), base_url=base_url)
    renderings = tool_renderings()
    sampling = SamplingParams(max_new_tokens=64)
    rng = random.Random(seed)
    right_tool = calls = answers = later = asked = 0
    while asked < questions:
        first, second = sample_dialog(rng), sample_dialog(rng)
        if len(first) < 4 or len(second) < 4:
            continue
        tools = renderings[asked % len(renderings)]
        asked += 1
        result = run_chat(backend, build_request(first[:1], tools, sampling=sampling))
        expected = [(call.name, call.arguments) for call in first[1].tool_calls]
        made = [(call.name, call.arguments) for call in result.parsed.calls]
        right_tool += [name for name, _ in made] == [name for name, _ in expected]
        calls += made == expected
        result = run_chat(backend, build_request(first[:3], tools, sampling=sampling))
        answers += not result.parsed.calls and result.parsed.content == first[3].content
        result = run_chat(backend, build_request([*first, second[0]], tools, sampling=sampling))
        expected = [(call.name, call.arguments) for call in second[1].tool_calls]
        later += [(call.name, call.arguments) for call in result.parsed.calls] == expected
    return DemoScore(
        right_tool / asked, calls / asked, answers / asked, later / asked, asked
    )
