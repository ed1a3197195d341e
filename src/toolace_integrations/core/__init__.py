"""What every backend shares: the request and result records, the neutral turn, the scheduler.

:mod:`.generation` holds the records and the ``Backend`` protocol, :mod:`.chat` turns a
conversation into a request and a result into a turn, :mod:`.encoding` turns prompts into token
ids, :mod:`.scheduling` decides who runs when, :mod:`.budget` where a forced answer ends early
near ``max_tokens`` (for both backends), :mod:`.forking` resets state in a forked child.
It imports only :mod:`toolace_integrations.format` and :mod:`toolace_integrations.errors`, and
never torch.
"""
