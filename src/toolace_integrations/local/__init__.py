"""The model in this process, with transformers and torch.

The engine prepares requests (encoding, grammar, the budget closer of
:mod:`toolace_integrations.core.budget`) and runs them through one runner with a prefix cache and
an incremental detokenizer; :mod:`.grammar` wraps xgrammar.
It imports :mod:`toolace_integrations.core` and :mod:`toolace_integrations.format`, never the
remote client or the framework adapters.
"""
