"""tests/vm/guest runs inside the VM only (tests/vm/run.py boots it), never in the host's pytest run."""

from __future__ import annotations

import os

collect_ignore = [] if os.environ.get("NODEAGENT_VM_GUEST") else ["guest"]
