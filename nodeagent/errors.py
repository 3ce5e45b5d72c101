"""The one exception hierarchy of nodeagent.

Validation collects every problem as a FieldError before raising; effect errors carry the object
they failed on, so a message always says where and what.
"""

from __future__ import annotations

from dataclasses import dataclass


class NodeAgentError(Exception):
    """Base of every error nodeagent raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem at one field, worded as the Kubernetes API server words it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class QuantityError(NodeAgentError, ValueError):
    """A string that is not a Kubernetes resource.Quantity."""


class ConfigError(NodeAgentError):
    """An invalid configuration value, named by its field path."""

    def __init__(self, source: str, errors: list[FieldError]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(str(e) for e in errors))


class CgroupError(NodeAgentError):
    """A cgroup operation that failed, with the cgroup and file it failed on."""


class CgroupWriteError(CgroupError):
    def __init__(self, path: str, file: str, value: str, cause: OSError) -> None:
        self.path = path
        self.file = file
        self.value = value
        self.errno = cause.errno
        super().__init__(f"writing {value!r} to {path}/{file}: {cause.strerror or cause}")


class RuntimeStartError(NodeAgentError):
    """A container that could not be created or started; reason is Kubernetes' word for it."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


class AgentUnavailableError(NodeAgentError):
    """The CLI found no agent answering on the socket."""
