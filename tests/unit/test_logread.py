"""Reading logs as kubectl asks: the tail from the end in blocks, limitBytes, since, follow across a rotation."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import io
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.runtime import logread
from nodeagent.runtime.logread import LogOptions, open_log, read_log, tail_start
from nodeagent.server import log_options

T0 = dt.datetime(2026, 12, 4, 16, 0, 0, tzinfo=dt.UTC)


def record(i: int, *, stream: str = "stdout", tag: str = "F", at: dt.datetime | None = None) -> bytes:
    stamp = (at or T0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    return f"{stamp} {stream} {tag} line {i}\n".encode()


def read_all(path: Path, options: LogOptions, running: bool = False) -> bytes:
    async def collect() -> bytes:
        chunks = [chunk async for chunk in read_log(open_log(str(path)), str(path), options, lambda: running)]
        return b"".join(chunks)
    return asyncio.run(collect())


def kubelet_tail(data: bytes, lines: int) -> int:
    """The kubelet's rule, straightforwardly: the start of the last `lines` complete lines."""
    complete = data[: data.rfind(b"\n") + 1]
    starts = [0, *[i + 1 for i, byte in enumerate(complete) if byte == ord("\n")][:-1]]
    return starts[-lines] if 0 < lines <= len(starts) else (len(complete) if lines == 0 else 0)


@given(st.lists(st.binary(max_size=5).map(lambda b: b.replace(b"\n", b"x")), max_size=30), st.booleans(),
       st.integers(min_value=0, max_value=35), st.integers(min_value=1, max_value=7))
def test_tail_start_is_the_kubelets(lines: list[bytes], unfinished: bool, tail: int, block: int) -> None:
    data = b"".join(line + b"\n" for line in lines) + (b"partial" if unfinished else b"")
    original = logread.BLOCK_BYTES
    logread.BLOCK_BYTES = block  # many blocks even for short files
    try:
        assert tail_start(io.BytesIO(data), tail) == (kubelet_tail(data, tail), min(tail, len(lines)))
    finally:
        logread.BLOCK_BYTES = original


def test_without_follow_the_log_ends_where_it_ended_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`kubectl logs --tail 1` of a container writing on: one line, not the one written meanwhile too (a CI run
    saw two); and a container writing flat out never keeps a read without follow going."""
    path = tmp_path / "0.log"
    path.write_bytes(b"".join(record(i) for i in range(10)))
    original = logread.earlier_files
    written = iter(range(10, 100))

    def then_written(*args: object) -> list[tuple[str, int]]:
        found = original(*args)  # type: ignore[arg-type]
        with open(path, "ab") as log:
            log.write(record(next(written)))  # the container writes between the tail's search and the read
        return found

    monkeypatch.setattr(logread, "earlier_files", then_written)
    assert read_all(path, LogOptions(tail_lines=1)) == b"line 9\n"
    assert read_all(path, LogOptions()).count(b"\n") == 11  # the one written before this read began, not after
    assert read_all(path, LogOptions(follow=True, tail_lines=1)) == b"line 11\nline 12\n"  # follow reads on


def test_tail_limit_and_since(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"".join(record(i) for i in range(1000)))
    assert read_all(path, LogOptions(tail_lines=2)) == b"line 998\nline 999\n"
    assert read_all(path, LogOptions(tail_lines=0)) == b""
    assert read_all(path, LogOptions(limit_bytes=12)) == b"line 0\nline "
    assert read_all(path, LogOptions(tail_lines=3, limit_bytes=9)) == b"line 997\n"
    since = T0 + dt.timedelta(seconds=997)
    assert read_all(path, LogOptions(since=since)) == b"line 997\nline 998\nline 999\n"
    stamped = read_all(path, LogOptions(tail_lines=1, timestamps=True))
    assert stamped == record(999).replace(b" stdout F", b"")


def test_a_large_file_is_read_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    with path.open("wb") as handle:
        for i in range(100_000):
            handle.write(record(i))
    chunks: list[bytes] = []

    async def collect() -> None:
        async for chunk in read_log(open_log(str(path)), str(path), LogOptions(), lambda: False):
            chunks.append(chunk)
    asyncio.run(collect())
    assert len(chunks) > 10 and max(len(c) for c in chunks) <= logread.CHUNK_BYTES
    assert b"".join(chunks).endswith(b"line 99999\n")


def test_follow_goes_on_in_the_new_file_after_a_rotation(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(record(1))

    async def scenario() -> bytes:
        running = True
        out: list[bytes] = []

        async def follow() -> None:
            async for chunk in read_log(open_log(str(path)), str(path), LogOptions(follow=True), lambda: running):
                out.append(chunk)

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        with path.open("ab") as old:
            old.write(record(2))
        os.rename(path, tmp_path / "0.log.20261204-160000")
        await asyncio.sleep(0.3)  # the writer has not reopened yet
        path.write_bytes(record(3))
        await asyncio.sleep(0.5)
        with path.open("ab") as new:
            new.write(record(4))
        running = False
        await asyncio.wait_for(task, 5)
        return b"".join(out)

    assert asyncio.run(scenario()) == b"line 1\nline 2\nline 3\nline 4\n"


def test_open_log_waits_out_a_rotation_and_not_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        open_log(str(tmp_path / "0.log"))
    (tmp_path / "0.log.20261204-160000.gz").write_bytes(b"")

    async def reopened_later() -> bytes:
        opening = asyncio.create_task(asyncio.to_thread(open_log, str(tmp_path / "0.log")))
        await asyncio.sleep(0.2)
        (tmp_path / "0.log").write_bytes(b"new")
        with await opening as handle:
            return handle.read()
    assert asyncio.run(reopened_later()) == b"new"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"tailLines": "-2"}, "tailLines: Invalid value: -2: must be greater than or equal to 0"),
        ({"limitBytes": "0"}, "limitBytes: Invalid value: 0: must be greater than 0"),
        ({"sinceSeconds": "0"}, "sinceSeconds: Invalid value: 0: must be greater than 0"),
        ({"tailLines": "ten"}, 'tailLines: Invalid value: "ten": must be an integer'),
        ({"sinceSeconds": "5", "sinceTime": "2026-12-04T16:00:00Z"}, "at most one of `sinceTime` or `sinceSeconds`"),
        ({"sinceTime": "yesterday"}, 'sinceTime: Invalid value: "yesterday"'),
        ({"sinceTime": "2026-12-04T16:00:00"}, 'sinceTime: Invalid value: "2026-12-04T16:00:00"'),
    ],
)
def test_log_options_are_checked_as_the_api_server_does(query: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        log_options(query, T0, follow_allowed=True)


def test_log_options() -> None:
    options = log_options({"tailLines": "10", "limitBytes": "100", "sinceSeconds": "60", "timestamps": "true",
                           "follow": "true"}, T0, follow_allowed=False)
    assert options == LogOptions(tail_lines=10, limit_bytes=100, since=T0 - dt.timedelta(seconds=60),
                                 timestamps=True, follow=False)
    assert log_options({"sinceTime": "2026-12-04T15:00:00Z"}, T0, follow_allowed=True).since == T0 - dt.timedelta(
        hours=1)


def rotated_chain(tmp_path: Path) -> Path:
    """Records 0-299: 0-99 in an older compressed file, 100-199 in a newer one not compressed yet, 200-299 now."""
    (tmp_path / "0.log.20261204-150000.gz").write_bytes(gzip.compress(b"".join(record(i) for i in range(100))))
    (tmp_path / "0.log.20261204-150001").write_bytes(b"".join(record(i) for i in range(100, 200)))
    path = tmp_path / "0.log"
    path.write_bytes(b"".join(record(i) for i in range(200, 300)))
    return path


def lines(first: int, last: int) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(first, last + 1))


def test_the_rotated_files_come_first(tmp_path: Path) -> None:
    path = rotated_chain(tmp_path)
    assert read_all(path, LogOptions()) == lines(0, 299)
    assert read_all(path, LogOptions(since=T0 + dt.timedelta(seconds=250))) == lines(250, 299)
    assert read_all(path, LogOptions(limit_bytes=len(lines(0, 4)))) == lines(0, 4)


@pytest.mark.parametrize("tail", [0, 1, 100, 101, 150, 200, 250, 300, 1000])
def test_a_tail_reaches_back_into_the_rotated_files(tmp_path: Path, tail: int) -> None:
    path = rotated_chain(tmp_path)
    assert read_all(path, LogOptions(tail_lines=tail)) == (lines(max(0, 300 - tail), 299) if tail else b"")


def test_a_tail_starts_with_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(record(1) + record(2, tag="P") + record(3, tag="P") + b"2026-12-04T16:00:04.000000000Z stdout F \n"
                     + record(5))
    assert read_all(path, LogOptions(tail_lines=2)) == b"line 2line 3\nline 5\n"
    assert read_all(path, LogOptions(tail_lines=1)) == b"line 5\n"
    assert read_all(path, LogOptions(tail_lines=5)) == b"line 1\nline 2line 3\nline 5\n"


def test_a_rotation_between_opening_and_reading_shows_nothing_twice(tmp_path: Path) -> None:
    path = rotated_chain(tmp_path)
    handle = open_log(str(path))
    os.rename(path, tmp_path / "0.log.20261204-150002")  # rotated right after it was opened
    path.write_bytes(record(300))

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in read_log(handle, str(path), LogOptions(), lambda: False)])
    assert asyncio.run(collect()) == lines(0, 299)
