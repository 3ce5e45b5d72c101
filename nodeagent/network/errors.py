"""The pod network's errors, under NodeAgentError: each names the object it failed on and the fix."""

from __future__ import annotations

from nodeagent.errors import NodeAgentError


class NetworkError(NodeAgentError):
    """A pod network that cannot be set up or torn down."""


class LeaseFileError(NetworkError):
    """<stateDir>/network/leases.json that cannot be used: unreadable, not JSON, or not a lease table."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}; the pod addresses it held are unknown: move the file aside "
                         "and remove the pods' network namespaces (/run/netns/nodeagent-*) by hand")


class AddressesExhaustedError(NetworkError):
    """Every address of the pod CIDR is leased."""


class HostPortConflictError(NetworkError):
    """A hostPort that another pod publishes already."""


class NetlinkOperationError(NetworkError):
    """A netlink request (pyroute2) that the kernel refused or that could not be sent."""

    def __init__(self, what: str, cause: Exception) -> None:
        self.what = what
        self.errno: int | None = getattr(cause, "code", None) or getattr(cause, "errno", None)
        super().__init__(f"{what}: {cause}")


class NftablesError(NetworkError):
    """An nft command that failed: what it was for and what nft said."""

    def __init__(self, what: str, message: str) -> None:
        self.what = what
        self.message = message
        super().__init__(f"nftables, {what}: {message}")
