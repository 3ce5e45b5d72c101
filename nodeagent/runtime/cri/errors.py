"""The errors of the CRI client: every gRPC failure becomes a CRIError at the client's boundary.

    CRIError(method, code, message)          any failed call; code is the gRPC status name
      CRIUnavailableError                    UNAVAILABLE (no runtime on the socket, yet or any more),
                                             or containerd still starting
      CRITimeoutError                        DEADLINE_EXCEEDED: the call's deadline passed
    CRIEndpointError                         no usable runtime endpoint (configured or discovered)
"""

from __future__ import annotations

from nodeagent.errors import NodeAgentError


class CRIError(NodeAgentError):
    """A CRI call that failed: the RPC, gRPC's status code name ("NOT_FOUND") and the runtime's message."""

    def __init__(self, method: str, code: str, message: str, *, endpoint: str = "") -> None:
        self.method = method
        self.code = code
        self.message = message
        self.endpoint = endpoint
        where = f" at {endpoint}" if endpoint else ""
        super().__init__(f"{method}{where}: {code}: {message}")

    @property
    def not_found(self) -> bool:
        return self.code == "NOT_FOUND"

    @property
    def unavailable(self) -> bool:
        """Nobody serves the runtime's API yet (or any more): try again later."""
        return isinstance(self, CRIUnavailableError)


class CRIUnavailableError(CRIError):
    """The runtime does not answer: its socket is missing, refuses, the connection broke, or it is
    still starting (containerd: UNKNOWN "server is not initialized yet")."""


class CRITimeoutError(CRIError):
    """The call's deadline passed before the runtime answered."""


class CRIEndpointError(NodeAgentError):
    """No runtime endpoint to use: an invalid containerRuntimeEndpoint, or none or several found."""
