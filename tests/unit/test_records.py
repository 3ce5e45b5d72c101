"""The container record's typed steps: what each one keeps and what it clears."""

from __future__ import annotations

import datetime as dt

from nodeagent.agent.records import ContainerRecord, State, Termination

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
