"""Objects whose locks and queues must start fresh in a forked child process.

A child (gunicorn ``--preload``, Celery prefork) has none of its parent's threads: a lock one of
them held stays held for ever, and work they were doing never finishes. Objects that own such
state register with :func:`reset_after_fork`; in the child each one's ``_after_fork`` runs.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

_live: weakref.WeakSet[Any] = weakref.WeakSet()


def reset_after_fork(owner: Any) -> None:
    """Call ``owner._after_fork()`` in every child forked while ``owner`` is alive."""
    _live.add(owner)


def _in_child() -> None:
    for owner in list(_live):
        owner._after_fork()


os.register_at_fork(after_in_child=_in_child)
