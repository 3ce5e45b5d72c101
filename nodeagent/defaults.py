"""Where the configuration and the API socket are when nothing says otherwise: one place for the agent and the CLI.

Light on purpose (no pydantic, no yaml): the client commands read it on every start.
"""

from __future__ import annotations

import os

CONFIG_PATH = "/etc/nodeagent/nodeagent.yaml"
SOCKET_PATH = "/run/nodeagent/nodeagent.sock"


def existing_config(option: str | None) -> str | None:
    """The configuration a command reads: the one named (--config or $NODEAGENT_CONFIG), else CONFIG_PATH
    when it exists, else None (the embedded defaults)."""
    if option is None and os.path.exists(CONFIG_PATH):
        return CONFIG_PATH
    return option
