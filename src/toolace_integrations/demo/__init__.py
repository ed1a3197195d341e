"""Demo tools, and a tiny model taught to call them, for the CLI's offline plumbing demo.

- :mod:`~toolace_integrations.demo.tools`: a safe calculator and a unit converter, plain and as
  ready LangChain and LlamaIndex tools;
- :mod:`~toolace_integrations.demo.dialogs`: synthetic ToolACE conversations over them;
- :mod:`~toolace_integrations.demo.training`: the tiny model trained on those, cached per user;
- :mod:`~toolace_integrations.demo.evaluation`: how well it calls the tools, measured.

It is a plumbing demo, not a capable model: it only knows questions shaped like its dialogs.
"""

from toolace_integrations.demo.dialogs import sample_conversation, sample_dialog, tool_renderings
from toolace_integrations.demo.evaluation import DemoScore, evaluate_demo_model
from toolace_integrations.demo.tools import (
    DEMO_TOOLS,
    UNITS,
    DemoTool,
    calculator,
    convert_units,
    langchain_tools,
    llama_index_tools,
)
from toolace_integrations.demo.training import (
    DEMO_MODEL_VERSION,
    NotADemoModelError,
    default_demo_model_dir,
    ensure_demo_model,
    train_demo_model,
)

__all__ = [
    "DEMO_MODEL_VERSION", "DEMO_TOOLS", "UNITS", "DemoScore", "DemoTool", "NotADemoModelError",
    "calculator", "convert_units", "default_demo_model_dir", "ensure_demo_model",
    "evaluate_demo_model", "langchain_tools", "llama_index_tools", "sample_conversation",
    "sample_dialog", "tool_renderings", "train_demo_model",
]  # fmt: skip
