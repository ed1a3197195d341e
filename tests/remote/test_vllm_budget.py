"""At the budget edge the vLLM backend answers as the local engine: closed early, or cut.

Greedy decoding on the same ids and grammar gives the same tokens on both; the remote backend
replays them through the engine's own budget closer, so a forced call the engine ends early comes
back ended at the same token from the server, and one the engine reports cut is reported cut.
Every assertion holds for any weights.
"""

from collections import Counter
from collections.abc import Iterator

import pytest
from _servers import Proxy

from toolace_integrations.core.chat import ChatTurn, build_request, run_chat
from toolace_integrations.core.generation import SamplingParams
from toolace_integrations.errors import TruncatedOutputError
from toolace_integrations.format.prompt import Message
from toolace_integrations.format.tools import FunctionSpec, ToolChoice
from toolace_integrations.llama_index import ToolACELLM
from toolace_integrations.local.engine import TransformersEngine
from toolace_integrations.remote import RemoteBackend

FLAGS = FunctionSpec(
    "set_flags",
    "Set the unit and any display flags.",
    {
        "type": "object",
        "properties": {
            "unit": {"enum": ["celsius", "fahrenheit"]},
            "label": {"type": "string"},
            **{f"f{i}": {"type": "boolean"} for i in range(8)},
        },
        "required": ["unit"],
    },
)
NOTE = FunctionSpec(
    "take_note",
    "Write a note.",
    {
        "type": "object",
        "properties": {"title": {"type": "string"}, "body": {"type": "string"}},
        "required": ["title"],
    },
)
QUESTIONS = ["Celsius, and every flag.", "Note this down.", "Set it all, then note it."]
CHOICES = [
    ToolChoice("named", "set_flags"),
    ToolChoice("required"),
    ToolChoice("named", "take_note"),
]


@pytest.fixture
def remote(proxy: Proxy, vllm_model: str) -> Iterator[RemoteBackend]:
    with RemoteBackend(proxy.url, vllm_model, backoff=0.01) as backend:
        yield backend


def _same(here: ChatTurn, there: ChatTurn) -> None:
    assert there.text == here.text
    assert there.finish_reason == here.finish_reason
    assert there.closed_early is here.closed_early
    assert there.completion_tokens == here.completion_tokens
    assert [(c.name, c.arguments) for c in there.parsed.calls] == [
        (c.name, c.arguments) for c in here.parsed.calls
    ]
    assert [(c.text, c.error) for c in there.parsed.invalid] == [
        (c.text, c.error) for c in here.parsed.invalid
    ]


def test_forced_calls_at_the_budget_edge_are_the_same_answer_on_both_backends(
    remote: RemoteBackend, vllm_engine: TransformersEngine
) -> None:
    outcomes: Counter[str] = Counter()
    requests = [
        build_request(
            [Message("user", question)], [FLAGS, NOTE], tool_choice=choice,
            sampling=SamplingParams(budget),
        )  # fmt: skip
        for budget in (25, 40, 55)
        for question, choice in zip(QUESTIONS, CHOICES, strict=True)
    ]
    for request in requests:  # streamed from the server, one by one
        here, there = run_chat(vllm_engine, request), run_chat(remote, request)
        _same(here, there)
        outcomes["closed" if here.closed_early else here.finish_reason] += 1
    batch = requests[:3]  # one list-prompt request, read whole
    for here, there in zip(
        vllm_engine.generate_batch(batch), remote.generate_batch(batch), strict=True
    ):
        assert (there.text, there.finish_reason, there.closed_early) == (
            here.text, here.finish_reason, here.closed_early,
        )  # fmt: skip
    print(f"outcomes at 25/40/55 tokens: {dict(outcomes)}")


# llama-index-workflows touches pydantic's deprecated accessors on the agent (not our code).
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20")
@pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
@pytest.mark.parametrize("budget", [8, 25, 40])
async def test_function_agent_at_the_budget_edge_runs_the_tool_or_raises(
    proxy: Proxy, vllm_model: str, budget: int
) -> None:
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.tools import FunctionTool

    def take_note(title: str, body: str = "") -> str:
        """Write a note."""
        return "noted"

    llm = ToolACELLM(model=vllm_model, base_url=proxy.url, max_new_tokens=budget)
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(take_note)], llm=llm, initial_tool_choice="take_note"
    )
    handler = agent.run(user_msg="Note this down.")
    try:
        results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
        await handler
    except TruncatedOutputError:
        return  # a clear error: the forced call (or a later one) was cut at max_tokens
    assert results and results[0].tool_output.content == "noted"  # never an empty answer
