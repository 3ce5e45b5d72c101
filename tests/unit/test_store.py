"""The state directory's pod files: what cannot be used is moved aside, never taken for "no such pod"."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import shutil
import threading
from pathlib import Path

import pytest

from nodeagent.agent import store
from nodeagent.agent.clock import SystemClock
from nodeagent.agent.store import PodStore, StateWriter
from tests.fakes.clock import FakeClock

NOW = dt.datetime(2026, 12, 4, 16, 0, 0, 123456, tzinfo=dt.UTC)


def saved(root: Path, uid: str, content: bytes) -> Path:
    path = root / "pods" / uid / "pod.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    return path


def test_a_good_file_is_loaded(tmp_path: Path) -> None:
    saved(tmp_path, "u1", json.dumps({"version": 1, "uid": "u1"}).encode())
    states, moved = PodStore(str(tmp_path)).load_all(NOW)
    assert (states, moved) == ([{"version": 1, "uid": "u1"}], [])


@pytest.mark.parametrize(("content", "why"), [
    (b'{"version": 1, "ui', "it cannot be read (Unterminated string"),
    (b"\xff\xfe", "it cannot be read ("),
    (b'{"version": 2, "uid": "u1"}', "its version 2 is not 1"),
    (b'{"version": 1, "uid": "someone-else"}', "it does not hold this pod's state"),
    (b"[1, 2]", "it does not hold this pod's state"),
])
def test_an_unusable_file_is_moved_aside_and_its_uid_stays_known(tmp_path: Path, content: bytes, why: str) -> None:
    path = saved(tmp_path, "u1", content)
    pods = PodStore(str(tmp_path))
    states, moved = pods.load_all(NOW)
    assert states == []
    [quarantine] = moved
    target = path.parent / "pod.json.quarantined-20261204T160000.123456Z"
    assert (quarantine.uid, quarantine.path) == ("u1", str(target))
    assert quarantine.reason.startswith(why)
    assert target.read_bytes() == content and not path.exists()
    assert pods.quarantined() == {"u1": [str(target)]}
    assert pods.load_all(NOW) == ([], [])  # moved once; the quarantine file is what keeps the UID known


def test_an_oversized_file_is_not_read_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "MAX_BYTES", 64)
    saved(tmp_path, "u1", json.dumps({"version": 1, "uid": "u1", "pad": "x" * 100}).encode())
    _, [quarantine] = PodStore(str(tmp_path)).load_all(NOW)
    assert quarantine.reason == "it cannot be read (larger than 64 bytes)"


class RecordingStore(PodStore):
    """Writes through, noting each; the first write can be held in its thread, writes can be made to fail."""

    def __init__(self, state_dir: str, *, hold_first: bool = False, failures: int = 0) -> None:
        super().__init__(state_dir)
        self.written: list[bytes] = []
        self.writing = threading.Event()
        self.let_go = threading.Event()
        if not hold_first:
            self.let_go.set()
        self.failures = failures

    def save(self, uid: str, data: bytes) -> None:
        self.writing.set()
        self.let_go.wait(10)
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        super().save(uid, data)
        self.written.append(data)


def state(n: int) -> bytes:
    return PodStore.encode({"uid": "u1", "n": n})


async def held_write(writer: StateWriter, files: RecordingStore) -> None:
    writer.save(state(1))
    while not files.writing.is_set():  # in its thread, held
        await asyncio.sleep(0.001)


async def test_writes_land_in_order_in_a_thread_the_newest_waiting_state_winning(tmp_path: Path) -> None:
    files = RecordingStore(str(tmp_path), hold_first=True)
    writer = StateWriter(files, "u1", SystemClock(), "default/p")
    await held_write(writer, files)
    writer.save(state(2))
    writer.save(state(3))  # replaces 2, which never gets written
    await asyncio.sleep(0.01)
    assert files.written == []  # the loop is free while the thread writes
    files.let_go.set()
    await writer.close(drop=False)
    assert files.written == [state(1), state(3)]
    assert Path(files.path("u1")).read_bytes() == state(3)


async def test_close_before_the_directory_goes_waits_for_the_write_in_flight_and_drops_the_rest(
        tmp_path: Path) -> None:
    files = RecordingStore(str(tmp_path), hold_first=True)
    writer = StateWriter(files, "u1", SystemClock(), "default/p")
    await held_write(writer, files)
    writer.save(state(2))
    closing = asyncio.create_task(writer.close(drop=True))
    await asyncio.sleep(0.01)
    assert not closing.done()  # the write in flight is awaited
    files.let_go.set()
    await closing
    assert files.written == [state(1)]
    shutil.rmtree(tmp_path / "pods")
    writer.save(state(3))  # too late: nothing is written after close()
    await asyncio.sleep(0.01)
    assert not (tmp_path / "pods").exists()


async def test_a_failed_write_is_tried_again_with_the_newest_state(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    files = RecordingStore(str(tmp_path), failures=2)
    writer = StateWriter(files, "u1", clock, "default/p")
    writer.save(state(1))
    await clock.settle()
    assert files.written == [] and files.failures == 1
    writer.save(state(2))
    await clock.advance(store.SAVE_RETRY_SECONDS)  # fails once more
    assert files.written == []
    await clock.advance(store.SAVE_RETRY_SECONDS)
    assert files.written == [state(2)]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("trying again" in m for m in messages) == 1 and any("saved again" in m for m in messages)
    await writer.close(drop=False)


async def test_a_state_the_file_holds_as_loaded_is_not_written_again_a_changed_one_is(tmp_path: Path) -> None:
    saved(tmp_path, "u1", state(1))
    files = RecordingStore(str(tmp_path))
    [loaded], _ = files.load_all(NOW)
    writer = StateWriter(files, "u1", SystemClock(), "default/p", on_disk=files.loaded("u1"))
    assert files.loaded("u1") is None  # handed out once
    writer.save(PodStore.encode(loaded))  # a restored pod re-adopted as it was: nothing to write, no thread
    await writer.close(drop=False)
    assert files.written == [] and not files.writing.is_set()
    writer = StateWriter(files, "u1", SystemClock(), "default/p", on_disk=store.digest(state(1)))
    writer.save(state(2))
    await asyncio.sleep(0.01)
    writer.save(state(2))  # written just now: known to be on disk
    writer.save(state(1))  # the file no longer holds this one
    await writer.close(drop=False)
    assert files.written == [state(2), state(1)]
    assert Path(files.path("u1")).read_bytes() == state(1)


def test_a_quarantined_file_leaves_no_digest_behind(tmp_path: Path) -> None:
    saved(tmp_path, "u1", state(1))
    files = PodStore(str(tmp_path))
    files.load_all(NOW)
    files.quarantine("u1", "it does not describe a pod this agent can rebuild", NOW)
    assert files.loaded("u1") is None
