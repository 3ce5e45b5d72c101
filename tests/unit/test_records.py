"""The container record's typed steps: what each one keeps and what it clears."""

from __future__ import annotations

import datetime as dt

from nodeagent.agent.records import LOST, UNKNOWN, ContainerRecord, State, Termination

T0 = dt.datetime(2026, 12, 4, 16, 0, tzinfo=dt.UTC)
FIRST = Termination(1, "Error", T0, T0 + dt.timedelta(seconds=5), "process://a")


def test_a_restart_waits_with_the_termination_as_the_last_one_then_runs_a_new_attempt() -> None:
    running = ContainerRecord("c", "img", init=False).started(T0, "process://a", 10, ready=True, attempt=0,
                                                              image_id="img@sha256:0")
    ended = running.ended(FIRST)
    assert (ended.state, ended.terminated, ended.pid, ended.started_at, ended.ready) == (
        State.TERMINATED, FIRST, None, None, False)
    waiting = ended.waiting("CrashLoopBackOff", "back-off 10s")
    assert (waiting.state, waiting.terminated, waiting.last_termination, waiting.reason) == (
        State.WAITING, None, FIRST, "CrashLoopBackOff")
    again = waiting.waiting("CrashLoopBackOff", "back-off 20s")  # waiting twice keeps the last termination
    assert again.last_termination == FIRST and again.message == "back-off 20s"
    started = ended.started(T0, "process://b", 11, ready=False, attempt=1, image_id="img@sha256:0")
    assert (started.restart_count, started.last_termination, started.terminated, started.reason) == (
        1, FIRST, None, None)


def test_a_container_taken_back_keeps_its_counts_and_last_termination() -> None:
    record = ContainerRecord("c", "img", init=False, restart_count=3, last_termination=FIRST)
    back = record.taken_back(T0, "process://c", 12, ready=True).with_ready(False)
    assert (back.state, back.restart_count, back.last_termination, back.container_id, back.ready) == (
        State.RUNNING, 3, FIRST, "process://c", False)



def test_attempts_begun_after_the_last_save_end_unknown_and_the_one_before_the_newest_is_the_last() -> None:
    """A state file saved while attempt 0 was still being created, then attempts 0 and 1 ran: attempt 0's end
    is the last termination, lost (seen under a loaded CI, where the save of attempt 0 running came late)."""
    now = T0 + dt.timedelta(minutes=1)
    lost = Termination(137, UNKNOWN, None, now, None, LOST)
    creating = ContainerRecord("c", "img", init=False)
    caught = creating.caught_up(1, now)
    assert (caught.restart_count, caught.terminated, caught.last_termination) == (1, lost, lost)
    # the attempt the record knew running is the last one when the newest follows it
    running = creating.started(T0, "process://a", 10, ready=True, attempt=0, image_id="img@sha256:0")
    assert running.caught_up(1, now).last_termination == Termination(137, UNKNOWN, T0, now, "process://a", LOST)
    # two attempts after it: the one before the newest began unrecorded
    assert running.caught_up(2, now).last_termination == lost
    # a record that knew attempt 0 ended: with attempt 1 the newest, attempt 0's end stays the last one
    assert running.ended(FIRST).caught_up(1, now).last_termination == FIRST
