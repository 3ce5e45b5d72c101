"""A container's termination message, as the kubelet reads it (terminationMessagePath/-Policy).

    message_mount(pod_dir, container, attempt) -> Mount    an empty host file, bind-mounted at the path
    read_message(host_file, log_path, policy, exit_code)  -> str   once the attempt has ended (blocking)
    pod_budget(containers) -> bytes per container status  the whole pod's messages within 12 KiB

Each attempt gets its own file, `<pod dir>/containers/<name>/<attempt>` (the kubelet's is named by a random
id): a message is never the previous attempt's. The file is made 0666, as the kubelet makes it, so that a
container running as any user can write it. The container owns what is in it: it is opened without
following a symlink, without blocking on a FIFO, only read if it is a regular file, and only its last
4096 bytes (the kubelet's tail.ReadAtMost). With FallbackToLogsOnError, an empty (or missing) file of an
attempt that failed (exit code not 0) gives the last 80 lines of its log, at most the last 2048 bytes.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat

from nodeagent.api.model import Container
from nodeagent.runtime.base import Mount
from nodeagent.runtime.logread import tail_start
from nodeagent.runtime.logs import render_log

MAX_MESSAGE_BYTES = 4 * 1024  # kubecontainer.MaxContainerTerminationMessageLength
MAX_POD_MESSAGE_BYTES = 12 * 1024  # MaxPodTerminationMessageLogLength
MAX_LOG_MESSAGE_BYTES = 2 * 1024  # MaxContainerTerminationMessageLogLength
MAX_LOG_MESSAGE_LINES = 80  # MaxContainerTerminationMessageLogLines
LOG_READ_BYTES = 1024 * 1024  # how much of the log's end is read for those lines at most
FALLBACK = "FallbackToLogsOnError"
DEFAULT_PATH = "/dev/termination-log"  # every container's unless it says otherwise: a host-process runtime keeps
# the target it makes there (every pod mounts it; removing it would unmount it from the others' containers)


def container_path(container: Container) -> str:
    """The path in the container, made absolute as the kubelet's MakeAbsolutePath (`/` + path, cleaned)."""
    return posixpath.normpath("/" + container.termination_message_path.lstrip("/"))


def message_file(pod_dir: str, container: str, attempt: int) -> str:
    return os.path.join(pod_dir, "containers", container, str(attempt))


def message_mount(pod_dir: str, container: Container, attempt: int) -> Mount | None:
    """A new empty file for this attempt (the container's earlier ones removed), to mount at its path; None
    when the container has no path (the path is `/`: nothing can be mounted there)."""
    target = container_path(container)
    if target == "/":
        return None
    path = message_file(pod_dir, container.valid_name, attempt)
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o750, exist_ok=True)
    for entry in os.listdir(directory):
        if entry != str(attempt):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, entry))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        os.fchmod(fd, 0o666)  # whatever the umask: any user may write it
    finally:
        os.close(fd)
    return Mount(host_path=path, container_path=target)


def read_attempt(pod_dir: str, container: Container, attempt: int, log_path: str, exit_code: int) -> str:
    """The message the container's ended attempt left (blocking: run in a thread)."""
    return read_message(message_file(pod_dir, container.valid_name, attempt), log_path,
                        container.termination_message_policy, exit_code)


def read_message(host_file: str, log_path: str, policy: str, exit_code: int) -> str:
    """The attempt's message: its file, or with FallbackToLogsOnError and a failure, its log's end."""
    fallback = policy == FALLBACK and exit_code != 0
    try:
        data = _read_tail(host_file)
    except FileNotFoundError:
        data = b""
    except OSError as exc:
        return f"Error on reading termination log {host_file}: {exc.strerror or exc}"
    if data or not fallback:
        return data.decode(errors="replace")
    try:
        return _log_tail(log_path).decode(errors="replace")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        return f"Error on reading termination message from logs: {exc.strerror or exc}"


def _read_tail(path: str) -> bytes:
    """The last MAX_MESSAGE_BYTES of a regular file, never through a symlink, never blocking on a FIFO."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(0, "not a regular file")
        size = info.st_size
        os.lseek(fd, max(0, size - MAX_MESSAGE_BYTES), os.SEEK_SET)
        chunks = []
        left = MAX_MESSAGE_BYTES
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _log_tail(log_path: str) -> bytes:
    """The output of the log's last MAX_LOG_MESSAGE_LINES records, its last MAX_LOG_MESSAGE_BYTES."""
    with open(log_path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        start, _ = tail_start(handle, MAX_LOG_MESSAGE_LINES)
        if end - start > LOG_READ_BYTES:  # huge lines: only the end's last records count anyway
            handle.seek(end - LOG_READ_BYTES)
            handle.readline()  # a record cut in the middle
            start = handle.tell()
        handle.seek(start)
        data = handle.read(LOG_READ_BYTES)
    return render_log(data)[-MAX_LOG_MESSAGE_BYTES:]


def pod_budget(containers: int) -> int:
    """Bytes each container status's message may keep (the status manager's normalizeStatus)."""
    return MAX_POD_MESSAGE_BYTES // containers if containers > 0 else MAX_POD_MESSAGE_BYTES


def truncate(message: str, budget: int) -> str:
    """The message's first `budget` bytes (a character cut in two shows as U+FFFD, as Go's JSON does)."""
    data = message.encode()
    return message if len(data) <= budget else data[:budget].decode(errors="replace")
