"""Fakes of the agent's Protocols for the fast tier (tests/unit): no root, no real time, no processes."""
