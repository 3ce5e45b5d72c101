"""Container logs in the CRI format, in the kubelet's layout, and rendered back as `kubectl logs` shows them.

    <podLogsDir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log
    2016-10-06T00:17:09.669794202Z stdout F the line
    2016-10-06T00:17:09.669794202+00:00 stderr P a piece of a long line

conmon writes them; `P` marks a piece of a line, `F` the end of one. Records are bytes: a piece may
end inside a UTF-8 character, so pieces are joined before anything is decoded.
"""

from __future__ import annotations

import datetime as dt
import os
import re

_ATTEMPT = re.compile(r"(\d{1,9})\.log(\.|$)")
_TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def pod_log_dir(logs_root: str, namespace: str, name: str, uid: str) -> str:
    return os.path.join(logs_root, f"{namespace}_{name}_{uid}")


def container_log_path(logs_root: str, namespace: str, name: str, uid: str, container: str, attempt: int) -> str:
    return container_log_file(pod_log_dir(logs_root, namespace, name, uid), container, attempt)


def container_log_file(pod_log_directory: str, container: str, attempt: int) -> str:
    """The attempt's log in its pod's log directory (a container's name is a DNS label: no `/`)."""
    return f"{pod_log_directory}/{container}/{attempt}.log"


def highest_attempt(container_log_dir: str, *, written_after: float) -> int | None:
    """The highest attempt whose log file (`<n>.log`, or rotated `<n>.log.<time>[.gz]`) in a container's log
    directory was written at `written_after` (a time.time()) or later, None if none was. Blocking: run it in a
    thread."""
    try:
        entries = list(os.scandir(container_log_dir))
    except OSError:
        return None
    attempts = []
    for entry in entries:
        found = _ATTEMPT.match(entry.name)
        try:
            if found and entry.stat().st_mtime >= written_after:
                attempts.append(int(found.group(1)))
        except OSError:
            continue
    return max(attempts, default=None)


def parse_line(line: bytes) -> tuple[bytes, str, bool, bytes] | None:
    """(timestamp, stream, partial, content) of one record (without its newline), None if malformed."""
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr") or parts[2] not in (b"P", b"F"):
        return None
    if not _TIMESTAMP.fullmatch(parts[0]):
        return None
    return parts[0], parts[1].decode(), parts[2] == b"P", parts[3] if len(parts) > 3 else b""


class LogRenderer:
    """CRI records in, the container's output out: pieces joined, optionally each line time-stamped.

    feed() may get any slice of a file; a record is only rendered once its newline has arrived. As the
    kubelet's, `since` is checked per record: a line's pieces stamped before it are left out.
    """

    def __init__(self, *, timestamps: bool = False, since: dt.datetime | None = None) -> None:
        self.timestamps = timestamps
        self.since = since  # records stamped earlier are left out (sinceTime, sinceSeconds)
        self._pending = b""
        self._line_start = True

    def feed(self, data: bytes) -> bytes:
        records = (self._pending + data).split(b"\n")
        self._pending = records.pop()
        return b"".join(self._render(record) for record in records)

    def finish(self) -> bytes:
        """The end of the file: a last record without its newline is rendered as it is."""
        rest, self._pending = self._pending, b""
        return self._render(rest) if rest else b""

    def _render(self, record: bytes) -> bytes:
        parsed = parse_line(record)
        if parsed is None:
            return b""
        stamp, _, partial, content = parsed
        if self.since is not None and dt.datetime.fromisoformat(stamp.decode()) < self.since:
            return b""
        prefix = stamp + b" " if self.timestamps and self._line_start else b""
        self._line_start = not partial
        return prefix + content + (b"" if partial else b"\n")


def render_log(data: bytes, timestamps: bool = False) -> bytes:
    renderer = LogRenderer(timestamps=timestamps)
    return renderer.feed(data) + renderer.finish()
