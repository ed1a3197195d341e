"""A vLLM server as the backend: the client, its requests, the checks on its answers, batching.

Token ids go over the wire, so the prompt is exactly the one the local engine would run. It
imports :mod:`toolace_integrations.core` and :mod:`toolace_integrations.format` (and httpx),
never the local engine nor torch, so a thin client installs without them.
"""

from toolace_integrations.remote.client import (
    GrammarNotEnforcedError,
    GrammarParam,
    InsecureKeyWarning,
    RemoteBackend,
    RemoteConfigError,
    RemoteError,
)

__all__ = [
    "GrammarNotEnforcedError",
    "GrammarParam",
    "InsecureKeyWarning",
    "RemoteBackend",
    "RemoteConfigError",
    "RemoteError",
]
