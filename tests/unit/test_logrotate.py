"""Log rotation: the kubelet's names, every rotated file trimmed and compressed, the oldest deleted."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import os
from pathlib import Path
from typing import Any

import pytest

from nodeagent.inotify import Inotify
from nodeagent.runtime import logrotate
from nodeagent.runtime.logrotate import (
    LogFile,
    LogLimits,
    bound,
    keep_bounded,
    newest_lines_offset,
    prune,
    rotated_files,
)

T0 = dt.datetime(2026, 12, 4, 16, 2, 37, tzinfo=dt.UTC)


def records(first: int, last: int) -> bytes:
    return b"".join(b"2026-12-04T16:02:37.000000000Z stdout F line %06d\n" % i for i in range(first, last + 1))


def reopener(path: Path, calls: list[str]) -> LogFile:
    async def reopen() -> bool:
        calls.append("reopen")
        path.write_bytes(b"")  # what conmon or containerd does: a new file at the path
        return True
    return LogFile(str(path), reopen)


def test_newest_lines_offset_starts_at_a_line(tmp_path: Path) -> None:
    data = records(1, 100)
    line = len(records(1, 1))
    for limit in (line * 10, line * 10 + 7, line * 10 - 1):
        path = tmp_path / f"offset-{limit}"
        try:
            path.write_bytes(data)
            offset = newest_lines_offset(str(path), limit)
            assert offset % line == 0 and len(data) - offset <= limit
            assert len(data) - offset >= limit - line
        finally:
            path.unlink()


def test_a_burst_is_rotated_trimmed_and_compressed(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(records(1, 10_000))  # ~560 KB at once
    calls: list[str] = []
    asyncio.run(bound(reopener(log, calls), LogLimits(max_size=10_000, max_files=3), T0))
    assert calls == ["reopen"]
    assert sorted(os.listdir(tmp_path)) == ["0.log", "0.log.20261204-160237.gz"]
    kept = gzip.decompress((tmp_path / "0.log.20261204-160237.gz").read_bytes())
    assert len(kept) <= 10_000 and kept.endswith(records(10_000, 10_000))
    assert kept.startswith(b"2026-12-04T")  # a whole first line


def test_no_rotation_under_the_size(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(records(1, 10))
    calls: list[str] = []
    asyncio.run(bound(reopener(log, calls), LogLimits(max_size=10_000, max_files=3), T0))
    assert calls == [] and os.listdir(tmp_path) == ["0.log"]


def test_at_most_max_files_in_all(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    calls: list[str] = []
    limits = LogLimits(max_size=1000, max_files=3)
    for second in range(5):
        log.write_bytes(records(second * 100, second * 100 + 99))
        asyncio.run(bound(reopener(log, calls), limits, T0 + dt.timedelta(seconds=second)))
    assert sorted(os.listdir(tmp_path)) == ["0.log", "0.log.20261204-160240.gz", "0.log.20261204-160241.gz"]
    newest = gzip.decompress((tmp_path / "0.log.20261204-160241.gz").read_bytes())
    assert newest.endswith(records(499, 499))


def test_twice_in_one_second_waits_for_the_next(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    calls: list[str] = []
    limits = LogLimits(max_size=1000, max_files=5)
    for _ in range(2):
        log.write_bytes(records(1, 100))
        asyncio.run(bound(reopener(log, calls), limits, T0))
    assert calls == ["reopen"]
    assert sorted(os.listdir(tmp_path)) == ["0.log", "0.log.20261204-160237.gz"]
    assert log.read_bytes() == records(1, 100)  # not lost: rotated a second later


def test_a_file_no_one_writes_is_trimmed_in_place(tmp_path: Path) -> None:
    log = tmp_path / "3.log"
    log.write_bytes(records(1, 1000))
    asyncio.run(bound(LogFile(str(log), None), LogLimits(max_size=5000, max_files=2), T0))
    assert os.listdir(tmp_path) == ["3.log"]
    data = log.read_bytes()
    assert len(data) <= 5000 and data.endswith(records(1000, 1000)) and data.startswith(b"2026-12-04T")


def test_a_writer_that_is_gone_gets_its_file_back(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(records(1, 1000))

    async def gone() -> bool:
        return False
    asyncio.run(bound(LogFile(str(log), gone), LogLimits(max_size=5000, max_files=2), T0))
    assert os.listdir(tmp_path) == ["0.log"] and log.read_bytes() == records(1, 1000)


def test_a_rotated_file_left_uncompressed_is_compressed_next_time(tmp_path: Path) -> None:
    log = tmp_path / "0.log"
    log.write_bytes(b"")
    (tmp_path / "0.log.20261204-160000").write_bytes(records(1, 1000))  # an agent stopped mid-rotation
    asyncio.run(bound(LogFile(str(log), None), LogLimits(max_size=5000, max_files=2), T0))
    assert sorted(os.listdir(tmp_path)) == ["0.log", "0.log.20261204-160000.gz"]


def test_rotated_files_are_the_kubelet_names_oldest_first(tmp_path: Path) -> None:
    for name in ("0.log", "0.log.20261204-160237.gz", "0.log.20261204-150000", "0.log.tmp", "1.log.20261204-150000",
                 "0.log.20261204-160237.gz.tmp", "0.log.junk"):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in rotated_files(str(tmp_path / "0.log"))] == [
        "0.log.20261204-150000", "0.log.20261204-160237.gz"]
    prune(str(tmp_path / "0.log"), 1)
    assert not (tmp_path / "0.log.20261204-150000").exists() and (tmp_path / "0.log.20261204-160237.gz").exists()


async def test_a_round_over_many_logs_takes_one_thread_hop_and_rotates_only_the_big_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two thread hops per log per second kept an agent with 1,000 sleeping pods at 20 % of a core."""
    for index in range(100):
        (tmp_path / f"{index}.log").write_bytes(b"x" * (2000 if index == 7 else 10))
    hops = []
    real = asyncio.to_thread

    async def counted(function: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(function.__name__)
        return await real(function, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    files = [LogFile(str(tmp_path / f"{index}.log"), None) for index in range(100)]
    task = asyncio.create_task(keep_bounded(lambda: files, LogLimits(max_size=1000, max_files=2)))
    try:
        for _ in range(200):
            await asyncio.sleep(0.005)
            if (tmp_path / "7.log").stat().st_size <= 1000:
                break
    finally:
        task.cancel()
    assert (tmp_path / "7.log").stat().st_size <= 1000 and (tmp_path / "8.log").stat().st_size == 10
    assert hops.count("_sweep") == 1 and len(hops) <= 4, hops  # the sweep, then the big log's own steps


async def test_leftovers_are_settled_in_the_first_round_and_later_rounds_list_no_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a crash left is tidied at once; after that only a log whose rotation failed is looked at again
    (every container's directory listed every 10 s cost 0.2 % of a core at 1,000 pods)."""
    monkeypatch.setattr(logrotate, "CHECK_SECONDS", 0.001)
    monkeypatch.setattr(logrotate, "SETTLE_EVERY", 2)
    for index in range(3):
        (tmp_path / f"{index}.log").write_bytes(b"x")
    (tmp_path / "1.log.20261204-160000").write_bytes(records(1, 10))  # an agent stopped mid-rotation
    listed: list[str] = []
    real = logrotate.rotated_files

    def counting(path: str) -> list[str]:
        listed.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(logrotate, "rotated_files", counting)
    files = [LogFile(str(tmp_path / f"{index}.log"), None) for index in range(3)]
    task = asyncio.create_task(keep_bounded(lambda: files, LogLimits(max_size=1000, max_files=2)))
    try:
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
    assert (tmp_path / "1.log.20261204-160000.gz").exists()
    assert sorted(listed) == ["0.log", "0.log", "1.log", "1.log", "2.log", "2.log"]  # round 0 only


async def test_a_log_whose_rotation_failed_is_settled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logrotate, "CHECK_SECONDS", 0.001)
    monkeypatch.setattr(logrotate, "SETTLE_EVERY", 2)
    log = tmp_path / "0.log"
    log.write_bytes(records(1, 100))
    failures = [OSError("No space left on device")]
    real = logrotate.compress

    def failing_once(path: str, limit: int) -> None:
        if failures:
            raise failures.pop()
        real(path, limit)

    monkeypatch.setattr(logrotate, "compress", failing_once)
    calls: list[str] = []
    task = asyncio.create_task(keep_bounded(lambda: [reopener(log, calls)], LogLimits(max_size=1000, max_files=2)))
    try:
        for _ in range(300):
            await asyncio.sleep(0.005)
            if any(name.endswith(".gz") for name in os.listdir(tmp_path)):
                break
    finally:
        task.cancel()
    assert calls == ["reopen"] and not failures
    assert sorted(name.endswith(".gz") for name in os.listdir(tmp_path)) == [False, True]  # 0.log and its .gz


def test_a_quiet_log_is_checked_every_quiet_every_rounds_until_it_grows(tmp_path: Path) -> None:
    """1,000 sleeping pods' logs sized every second were a quarter of the idle agent's CPU: a log unchanged for
    QUIET_CHECKS checks is sized only in the rounds that check every log, as the kubelet's every 10 s."""
    paths = [str(tmp_path / f"{index}.log") for index in range(3)]
    for path in paths:
        Path(path).write_bytes(b"x")
    limits = LogLimits(max_size=1000, max_files=2)
    logs = logrotate.Watched()
    logs.relist(LogFile(path, None) for path in paths)

    def check(*, every: bool) -> tuple[list[str], set[str]]:
        checked = logs.to_check(every=every, settle=set())
        over, _, sized = logrotate._sweep(checked, limits, set(), logs.sizes)
        logs.seen(sized)
        return [os.path.basename(path) for path in checked], over

    for _ in range(logrotate.QUIET_CHECKS + 1):  # new, then unchanged
        assert check(every=False) == (["0.log", "1.log", "2.log"], set())
    Path(paths[1]).write_bytes(b"x" * 2000)  # a burst in a quiet log
    assert check(every=False) == ([], set())
    assert check(every=True) == (["0.log", "1.log", "2.log"], {paths[1]})
    assert check(every=False)[0] == ["1.log"]  # it changed: checked every round again


async def test_logs_are_listed_again_after_a_change_and_a_quiet_agent_sizes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Listing 1,000 sleeping pods' logs every second was most of the idle agent's CPU: the logs are listed
    when the agent's version moved (a container started) or in a round that checks every log, and a round
    with no log to size takes no thread hop."""
    monkeypatch.setattr(logrotate, "CHECK_SECONDS", 0.001)
    monkeypatch.setattr(logrotate, "QUIET_CHECKS", 2)
    monkeypatch.setattr(logrotate, "QUIET_EVERY", 1000)
    (tmp_path / "0.log").write_bytes(b"x")
    files = [LogFile(str(tmp_path / "0.log"), None)]
    listings, sweeps, version = [], [], [0]
    real = logrotate._sweep

    def listing() -> list[LogFile]:
        listings.append(len(files))
        return list(files)

    def sweeping(paths: list[str], *args: Any) -> Any:
        sweeps.append([os.path.basename(path) for path in paths])
        return real(paths, *args)

    monkeypatch.setattr(logrotate, "_sweep", sweeping)
    task = asyncio.create_task(keep_bounded(listing, LogLimits(max_size=1000, max_files=2),
                                            version=lambda: version[0]))
    try:
        await asyncio.sleep(0.1)
        assert listings == [1] and sweeps == [["0.log"]] * 3  # new, then quiet after two unchanged checks
        big = tmp_path / "1.log"
        big.write_bytes(b"x" * 2000)  # a new container writing fast
        files.append(LogFile(str(big), None))
        version[0] += 1
        for _ in range(200):
            await asyncio.sleep(0.005)
            if big.stat().st_size <= 1000:
                break
    finally:
        task.cancel()
    assert listings == [1, 2] and sweeps[3] == ["1.log"] and big.stat().st_size <= 1000


def test_a_quiet_log_written_again_is_checked_in_the_next_round(tmp_path: Path) -> None:
    """A quiet log is watched (inotify) for its next write: a burst after a quiet spell is sized in the next
    round, not QUIET_EVERY seconds later (a container writing flat out got ~5 GB past its limit meanwhile)."""
    paths = [str(tmp_path / f"{index}.log") for index in range(3)]
    for path in paths:
        Path(path).write_bytes(b"x")
    limits = LogLimits(max_size=1000, max_files=2)
    inotify = Inotify()
    logs = logrotate.Watched(inotify)
    logs.relist(LogFile(path, None) for path in paths)

    def check() -> tuple[list[str], set[str]]:
        logs.woken()
        checked = logs.to_check(every=False, settle=set())
        over, _, sized = logrotate._sweep(checked, limits, set(), logs.sizes)
        logs.seen(sized)
        return [os.path.basename(path) for path in checked], over

    try:
        for _ in range(logrotate.QUIET_CHECKS + 1):  # new, then unchanged: quiet
            assert check() == (["0.log", "1.log", "2.log"], set())
        assert check() == ([], set())
        with open(paths[1], "ab") as handle:  # a burst in a quiet log
            handle.write(b"x" * 2000)
        assert check() == (["1.log"], {paths[1]})
        assert check()[0] == ["1.log"]  # it changed: checked every round again
        Path(paths[2]).unlink()  # a quiet log deleted: its watch goes, and no write woke it
        assert check()[0] == ["1.log"]
    finally:
        inotify.close()
