"""v2 OOM watches: every one in a single inotify instance, each waking only its own container.

memory.events stands in as a plain file (inotify's IN_MODIFY is the same for a file the test writes); the
cgroup v2 tests (tests/vm) run the real ones.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from nodeagent.cgroups.oom import MemoryEventsWatches
from tests.unit.waiting import until


def inotify_instances() -> int:
    return sum(os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify" for fd in os.listdir("/proc/self/fd")
               if os.path.islink(f"/proc/self/fd/{fd}"))


async def test_two_hundred_watches_take_one_inotify_instance_and_wake_their_own(tmp_path: Path) -> None:
    watches = MemoryEventsWatches()
    woken: list[int] = []
    before = inotify_instances()
    opened = []
    for index in range(200):
        directory = tmp_path / f"c{index}"
        directory.mkdir()
        (directory / "memory.events").write_text("oom_kill 0\n")
        opened.append(watches.watch(str(directory), functools.partial(woken.append, index)))
    assert inotify_instances() == before + 1  # not 200: fs.inotify.max_user_instances is 128 by default
    (tmp_path / "c7" / "memory.events").write_text("oom_kill 1\n")
    await until(lambda: woken, seconds=2, what="the watch of c7")
    assert set(woken) == {7}
    opened[7].close()
    woken.clear()
    (tmp_path / "c7" / "memory.events").write_text("oom_kill 2\n")  # closed: heard by nobody
    (tmp_path / "c8" / "memory.events").write_text("oom_kill 1\n")
    await until(lambda: 8 in woken, seconds=2, what="the watch of c8")
    assert set(woken) == {8}


async def test_a_removed_cgroup_ends_its_watch_and_closing_it_afterwards_is_fine(tmp_path: Path) -> None:
    watches = MemoryEventsWatches()
    directory = tmp_path / "gone"
    directory.mkdir()
    (directory / "memory.events").write_text("oom_kill 0\n")
    watch = watches.watch(str(directory), lambda: None)
    (directory / "memory.events").unlink()
    directory.rmdir()
    await until(lambda: not watches._notify, seconds=2, what="the kernel's IN_IGNORED")
    watch.close()
