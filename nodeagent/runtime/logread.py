"""Reading a container's log as `kubectl logs` asks for it, in chunks, never the whole file at once.

    tailLines    the last N records, found by reading blocks backwards from the end (as the kubelet's
                 tail.FindTailLineStartIndex: an unfinished last record is not counted), moved back to the
                 start of a line whose first pieces (P records) it would cut off
    limitBytes   the output stops after N bytes
    since        records older than this time are skipped (sinceSeconds / sinceTime)
    follow       at the end of the file, wait for more while the container runs; when a rotation has put
                 a new file at the path, go on in that one (the old one is read to its end first). Without
                 it, the log ends where it ended when asked: a tail is N records even while the container
                 writes on, and a container writing flat out cannot keep a read going

Unlike the kubelet's ReadLogs, which reads only the current file (right after a rotation, an empty one),
the rotated files come first: everything kept is shown, and a tail reaches back into them as far as needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import io
import os
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import BinaryIO

from nodeagent.runtime.logrotate import rotated_files
from nodeagent.runtime.logs import LogRenderer

CHUNK_BYTES = 256 * 1024
BLOCK_BYTES = 64 * 1024
FOLLOW_POLL_SECONDS = 0.2
REOPEN_GAP_SECONDS = 2.0  # as long as a rotation waits for conmon to reopen


@dataclass(frozen=True, slots=True)
class LogOptions:
    tail_lines: int | None = None
    limit_bytes: int | None = None
    since: dt.datetime | None = None
    timestamps: bool = False
    follow: bool = False


def tail_start(handle: BinaryIO, lines: int, end: int | None = None) -> tuple[int, int]:
    """(where the last `lines` complete records of the file (up to `end`) begin, how many there are from there),
    reading back in blocks from the end. Fewer than `lines` only when the file begins at that offset (0)."""
    position = handle.seek(0, os.SEEK_END) if end is None else end
    wanted = lines + 1  # the newline before the first wanted record
    while position > 0:
        start = max(0, position - BLOCK_BYTES)
        handle.seek(start)
        block = handle.read(position - start)
        at = len(block)
        while (at := block.rfind(b"\n", 0, at)) >= 0:
            wanted -= 1
            if wanted == 0:
                return start + at + 1, lines
        position = start
    return 0, lines + 1 - wanted


def line_start(handle: BinaryIO, offset: int) -> int:
    """`offset` (a record's start) moved back over the pieces (P records) of the line it continues, so that a
    tail starts with a whole line (the kubelet's may start with the end of one)."""
    while offset > 0:
        end = offset - 1  # the newline that ends the record before
        start = end
        while start > 0:
            begin = max(0, start - BLOCK_BYTES)
            handle.seek(begin)
            block = handle.read(start - begin)
            at = block.rfind(b"\n")
            if at >= 0:
                start = begin + at + 1
                break
            start = begin
        handle.seek(start)
        fields = handle.read(min(end - start, 64)).split(b" ", 3)
        if len(fields) < 3 or fields[2] != b"P":
            return offset
        offset = start
    return 0


def _open_rotated(path: str) -> io.BufferedIOBase:
    """A rotated file, decompressed as it is read; one compressed since it was listed is found as .gz."""
    if path.endswith(".gz"):
        return gzip.GzipFile(path, "rb")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return gzip.GzipFile(path + ".gz", "rb")


def _count_records(path: str) -> int:
    with _open_rotated(path) as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""))


def earlier_files(handle: BinaryIO, path: str, tail_lines: int | None, end: int | None) -> list[tuple[str, int]]:
    """The rotated files to read before the current one, oldest first, each with how many of its first records
    to skip: all of them whole, or for a tail as many of the newest as it reaches back to (the current file's
    handle is left at the tail's start, counted back from `end`, or from its end now)."""
    rotated = rotated_files(path)
    if rotated and _replaced_since_opened(path, handle):  # rotated since it was opened: the newest one is it
        rotated.pop()
    if tail_lines is None:
        return [(name, 0) for name in rotated]
    offset, found = tail_start(handle, tail_lines, end)
    handle.seek(line_start(handle, offset))
    chosen: list[tuple[str, int]] = []
    for name in reversed(rotated):
        if found >= tail_lines:
            break
        try:
            count = _count_records(name)
        except FileNotFoundError:  # pruned meanwhile
            continue
        take = min(count, tail_lines - found)
        chosen.insert(0, (name, count - take))
        found += take
    return chosen


def _skip_records(stream: io.BufferedIOBase, records: int) -> bytes:
    """Read past the first `records` records; what was read beyond them."""
    while records > 0:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            return b""
        at = -1
        while records > 0 and (at := chunk.find(b"\n", at + 1)) >= 0:
            records -= 1
        if records == 0:
            return chunk[at + 1:]
    return b""


def _replaced_since_opened(path: str, handle: BinaryIO) -> bool:
    try:
        return os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:  # between the rename and the writer's reopen
        return True


def _replaced(path: str, handle: BinaryIO) -> BinaryIO | None:
    """The new file at `path` when a rotation has put one there, else None."""
    if not _replaced_since_opened(path, handle):
        return None
    try:
        return open(path, "rb")
    except FileNotFoundError:  # between the rename and the writer's reopen
        return None


def open_log(path: str) -> BinaryIO:
    """Open a container's current log; blocks (in a thread) through the moment a rotation has renamed it and
    the writer has not made the new file yet. FileNotFoundError when there is none."""
    deadline = time.monotonic() + REOPEN_GAP_SECONDS
    while True:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not rotated_files(path) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


async def read_log(handle: BinaryIO, path: str, options: LogOptions,
                   running: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
    """The rendered log in chunks: the rotated files, then the current one (`handle`, open at `path`), which
    is closed at the end; with follow, until `running()` turns false and the file is read to its end."""
    remaining = options.limit_bytes
    try:
        async with contextlib.aclosing(_rendered(handle, path, options, running)) as chunks:
            async for chunk in chunks:
                out = chunk if remaining is None else chunk[:remaining]
                if out:
                    yield out
                if remaining is not None:
                    remaining -= len(out)
                    if remaining == 0:
                        return
    finally:
        handle.close()


async def _rendered(handle: BinaryIO, path: str, options: LogOptions,
                    running: Callable[[], bool]) -> AsyncGenerator[bytes, None]:
    renderer = LogRenderer(timestamps=options.timestamps, since=options.since)
    end = None if options.follow else os.fstat(handle.fileno()).st_size  # without follow: the log as it is now
    for name, skip in await asyncio.to_thread(earlier_files, handle, path, options.tail_lines, end):
        try:
            stream = await asyncio.to_thread(_open_rotated, name)
        except FileNotFoundError:  # pruned meanwhile
            continue
        try:
            yield renderer.feed(await asyncio.to_thread(_skip_records, stream, skip))
            while data := await asyncio.to_thread(stream.read, CHUNK_BYTES):
                yield await asyncio.to_thread(renderer.feed, data)
        finally:
            stream.close()

    def next_chunk(current: BinaryIO) -> tuple[bytes, bool]:
        data = current.read(CHUNK_BYTES if end is None else max(0, min(CHUNK_BYTES, end - current.tell())))
        return renderer.feed(data), bool(data)

    current = handle
    try:
        while True:
            live = options.follow and running()
            out, more = await asyncio.to_thread(next_chunk, current)
            if not more:
                if not live:
                    yield out + renderer.finish()
                    return
                if (newer := await asyncio.to_thread(_replaced, path, current)) is not None:
                    if current is not handle:
                        current.close()
                    current = newer
                    continue
            yield out
            if not more:
                await asyncio.sleep(FOLLOW_POLL_SECONDS)
    finally:
        if current is not handle:
            current.close()
