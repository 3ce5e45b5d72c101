"""Container logs in the CRI format, in the kubelet's layout.

    <podLogsDir>/<namespace>_<pod>_<uid>/<container>/<restartCount>.log
    2016-10-06T00:17:09.669794202Z stdout F the line
    2016-10-06T00:17:09.669794202Z stderr P part of a line longer than 16 KiB

`P` marks a piece of a line longer than 16 KiB, `F` the end of a line (or of the output).
"""

from __future__ import annotations

import datetime as dt
import os

MAX_LINE = 16 * 1024


def pod_log_dir(logs_root: str, namespace: str, name: str, uid: str) -> str:
    return os.path.join(logs_root, f"{namespace}_{name}_{uid}")


def container_log_path(logs_root: str, namespace: str, name: str, uid: str, container: str, attempt: int) -> str:
    return os.path.join(pod_log_dir(logs_root, namespace, name, uid), container, f"{attempt}.log")


def timestamp(now: dt.datetime) -> str:
    """RFC 3339 with nanoseconds, as the CRI writes it (Python has microseconds: zero-padded)."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


class StreamSplitter:
    """Cuts a byte stream into CRI log records; feed() chunks, finish() at end of stream."""

    def __init__(self, stream: str) -> None:
        self.stream = stream.encode()
        self.pending = b""

    def feed(self, chunk: bytes, now: dt.datetime) -> bytes:
        data = self.pending + chunk
        stamp = timestamp(now).encode()
        out = []
        start = 0
        while True:
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            if end - start > MAX_LINE:
                out.append(b"%s %s P %s\n" % (stamp, self.stream, data[start:start + MAX_LINE]))
                start += MAX_LINE
            elif newline >= 0:
                out.append(b"%s %s F %s\n" % (stamp, self.stream, data[start:newline]))
                start = newline + 1
            else:
                break
        self.pending = data[start:]
        return b"".join(out)

    def finish(self, now: dt.datetime) -> bytes:
        """What is left at the end of the stream is a full record, as containerd writes it."""
        if not self.pending:
            return b""
        record = b"%s %s F %s\n" % (timestamp(now).encode(), self.stream, self.pending)
        self.pending = b""
        return record


def parse_line(line: str) -> tuple[str, str, bool, str] | None:
    """(timestamp, stream, partial, content) of one CRI record, None if malformed."""
    parts = line.rstrip("\n").split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("stdout", "stderr") or parts[2] not in ("P", "F"):
        return None
    return parts[0], parts[1], parts[2] == "P", parts[3] if len(parts) > 3 else ""
