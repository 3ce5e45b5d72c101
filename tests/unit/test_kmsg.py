"""OOM victims from the kernel log's records: the cgroup, the task and when, as /dev/kmsg gives them."""

from pathlib import Path

from nodeagent.cgroups.kmsg import KernelLog

RECORD = ("6,2215,{usec},-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
          "oom_memcg=/kubepods/burstable/pod1/c,task_memcg=/kubepods/burstable/pod1/c,task=stress,pid=8261,uid=0\n")


def kernel_log_with(tmp_path: Path, record: str) -> KernelLog:
    """A KernelLog on a file that gets the record after the log was opened (earlier ones are not its)."""
    path = tmp_path / "kmsg"
    path.write_text(RECORD.format(usec=1_000_000))  # before the agent started: never matched
    log = KernelLog(str(path))
    with path.open("a") as handle:
        handle.write(record)
    return log


def test_a_victim_is_named_with_its_cgroup_and_time(tmp_path: Path) -> None:
    log = kernel_log_with(tmp_path, RECORD.format(usec=5_000_000))
    victim = log.victim_in("/kubepods/burstable/pod1/c")
    assert victim is not None
    assert (victim.task, victim.pid, victim.at, victim.describe()) == ("stress", 8261, 5.0, "stress (pid 8261)")
    assert log.victim_in("/kubepods/burstable/pod1") is not None  # the pod's: a cgroup below it
    assert log.victim_in("/kubepods/burstable/pod2") is None
    log.close()


def test_only_kills_since_the_attempt_started_count(tmp_path: Path) -> None:
    log = kernel_log_with(tmp_path, RECORD.format(usec=5_000_000))
    assert log.victim_in("/kubepods/burstable/pod1/c", since=4.0) is not None
    assert log.victim_in("/kubepods/burstable/pod1/c", since=6.0) is None  # an earlier attempt's kill
    log.close()
