"""The real-agent fixtures of the integration suite, for the security tests that run an agent (as root)."""

from tests.integration.conftest import agent_root, harness  # noqa: F401  (fixtures, found by pytest by name)
