"""A forked worker (gunicorn ``--preload``, Celery prefork) can still generate.

The parent makes an async call first, so its scheduler thread and locks exist before the fork;
the child, which inherits none of those threads, must still get its own answer. The fork runs
in a separate interpreter so a hang fails this test by its timeout instead of freezing pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import asyncio, os, sys
import torch
torch.set_num_threads(1)
from toolace_integrations.langchain import ChatToolACE

llm = ChatToolACE(model=sys.argv[1], max_tokens=4)
assert asyncio.run(llm.ainvoke("Hi")).usage_metadata["output_tokens"] >= 1
pid = os.fork()
if pid == 0:
    try:
        message = asyncio.run(asyncio.wait_for(llm.ainvoke("Hi again"), 30))
        sync = llm.invoke("And once more")
        os._exit(0 if message.usage_metadata and sync.usage_metadata else 3)
    except BaseException:
        os._exit(2)
_, status = os.waitpid(pid, 0)
assert asyncio.run(llm.ainvoke("Parent again")).usage_metadata["output_tokens"] >= 1
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _run_script(script: str, model_path: str) -> None:
    """Run ``script`` in a fresh interpreter; it exits 0 when parent and child both answered."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script, model_path],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_async_call_in_a_forked_child_after_one_in_the_parent(tiny_model_path: str) -> None:
    _run_script(SCRIPT, tiny_model_path)


COMPILING_SCRIPT = """
import os, signal, sys, threading, time
import torch
torch.set_num_threads(1)
from toolace_integrations.langchain import ChatToolACE

def get_weather(city: str) -> str:
    '''Weather for a city.'''
    return "sunny"

chat = ChatToolACE(model=sys.argv[1], max_tokens=24)
llm = chat.bind_tools([get_weather], tool_choice="any")
constraint = chat._backend()._grammar_constraint()
compile_grammar = constraint._compiler.compile_grammar
started = threading.Event()

def slow_compile(text):  # the parent's compile is still running when the process forks
    started.set()
    time.sleep(2)
    return compile_grammar(text)

constraint._compiler.compile_grammar = slow_compile
parent = threading.Thread(target=llm.invoke, args=("Weather in Paris?",))
parent.start()
assert started.wait(30)
pid = os.fork()
if pid == 0:
    signal.alarm(30)  # a child that hangs ends itself, failing the test
    constraint._compiler.compile_grammar = compile_grammar
    message = llm.invoke("Weather in Paris?")
    os._exit(0 if message.tool_calls or message.invalid_tool_calls else 3)
_, status = os.waitpid(pid, 0)
parent.join()
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_forked_child_compiles_a_grammar_the_parent_was_compiling(tiny_model_path: str) -> None:
    """The child waits for no compile of the parent's: that thread does not exist in it."""
    _run_script(COMPILING_SCRIPT, tiny_model_path)
