"""``python -m toolace_integrations.cli``: the ``toolace-integrations`` command."""

from toolace_integrations.cli import main

raise SystemExit(main())
