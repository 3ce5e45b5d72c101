"""OOM victims from the kernel log's records: the cgroup, the task and when, as /dev/kmsg gives them."""

from pathlib import Path

from nodeagent.cgroups.kmsg import KernelLog

RECORD = ("6,{seq},{usec},-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
          "oom_memcg=/kubepods/burstable/pod1/c,task_memcg=/kubepods/burstable/pod1/c,task=stress,pid=8261,uid=0\n")


def kernel_log_with(tmp_path: Path, record: str) -> KernelLog:
    """A KernelLog on a file that gets the record after the log was opened (earlier ones are not its)."""
    path = tmp_path / "kmsg"
    path.write_text(RECORD.format(seq=2214, usec=1_000_000))  # before the agent started: never matched
    log = KernelLog(str(path))
    with path.open("a") as handle:
        handle.write(record)
    return log


def test_a_victim_is_named_with_its_cgroup(tmp_path: Path) -> None:
    log = kernel_log_with(tmp_path, RECORD.format(seq=2215, usec=5_000_000))
    victim = log.victim_in("/kubepods/burstable/pod1/c")
    assert victim is not None
    assert (victim.task, victim.pid, victim.seq, victim.describe()) == ("stress", 8261, 2215, "stress (pid 8261)")
    assert log.victim_in("/kubepods/burstable/pod1") is not None  # the pod's: a cgroup below it
    assert log.victim_in("/kubepods/burstable/pod2") is None
    log.close()


def test_only_kills_logged_after_the_attempts_mark_count_whatever_their_timestamps(tmp_path: Path) -> None:
    """The kernel log's clock lags CLOCK_MONOTONIC on a long-running node (99 ms after 8 hours here): an OOM kill
    right after a start carried a time before it and lost its victim's name (CI: memory-demo-2)."""
    path = tmp_path / "kmsg"
    path.write_text("")
    log = KernelLog(str(path))
    with path.open("a") as handle:
        handle.write(RECORD.format(seq=7, usec=9_000_000))  # an earlier attempt's kill
    mark = log.mark()
    assert log.victim_in("/kubepods/burstable/pod1/c", after=mark) is None
    with path.open("a") as handle:
        handle.write(RECORD.format(seq=8, usec=8_900_000))  # this attempt's, stamped "before" the other
    victim = log.victim_in("/kubepods/burstable/pod1/c", after=mark)
    assert victim is not None and victim.seq == 8
    log.close()
