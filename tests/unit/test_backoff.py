"""The crash-loop back-off: the delay sequence, the reset after a long run, and how it is spelled.

Times are plain floats (seconds on a fake monotonic clock); nothing sleeps.
"""

import pytest

from nodeagent.agent import backoff
from nodeagent.agent.backoff import INITIAL_SECONDS, MAX_SECONDS, Backoff, in_backoff, next_backoff, remaining
from nodeagent.timeformat import go_duration


def crash_loop(run_seconds: list[float], *, start: float = 1000.0) -> tuple[list[float], list[float]]:
    """Drive one container through exits as PodWorker._supervise/_back_off does, on a fake clock.

    The container runs for each of `run_seconds` in turn; after each exit the worker waits out the
    back-off (if any) and restarts it. Returns (the wait before each restart, the back-off after it).
    """
    entry: Backoff | None = None
    now = start
    waits: list[float] = []
    after: list[float] = []
    for run in run_seconds:
        now += run  # the container exits
        finished = now
        wait = remaining(entry, finished, now) if in_backoff(entry, finished, now) else 0.0
        waits.append(wait)
        now += wait  # the fake clock jumps over the back-off
        assert not in_backoff(entry, finished, now)
        entry = next_backoff(entry, finished, now)  # the restart goes ahead, now
        after.append(entry.seconds)
    return waits, after


def test_constants_are_the_kubelets() -> None:
    assert (INITIAL_SECONDS, MAX_SECONDS) == (10.0, 300.0)


def test_a_crash_loop_waits_nothing_then_10s_doubling_up_to_5m() -> None:
    waits, after = crash_loop([1.0] * 10)
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300, 300, 300]
    assert after == [10, 20, 40, 80, 160, 300, 300, 300, 300, 300]


def test_the_first_exit_restarts_at_once_and_starts_the_back_off_at_10s() -> None:
    assert not in_backoff(None, 50.0, 50.0)
    assert remaining(None, 50.0, 50.0) == 0.0
    assert next_backoff(None, 50.0, 50.0) == Backoff(10.0, 50.0)


def test_a_crash_loop_with_instant_exits_gives_the_same_sequence() -> None:
    waits, _ = crash_loop([0.0] * 8)
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300]


def test_an_exit_more_than_10_minutes_after_the_last_restart_resets_the_back_off() -> None:
    # Six quick crashes bring the back-off to 300 s; then an exit 601 s after the last restart.
    entry = Backoff(300.0, last_update=5000.0)
    assert next_backoff(entry, 5601.0, 5601.0) == Backoff(10.0, 5601.0)


@pytest.mark.parametrize(
    ("entry", "finished_at", "expected"),
    [
        (None, 0.0, Backoff(10.0, 0.0)),
        (Backoff(10.0, 0.0), 5.0, Backoff(20.0, 5.0)),
        (Backoff(20.0, 0.0), 100.0, Backoff(40.0, 100.0)),
        (Backoff(160.0, 0.0), 200.0, Backoff(300.0, 200.0)),
        (Backoff(300.0, 0.0), 400.0, Backoff(300.0, 400.0)),
        (Backoff(40.0, 0.0), 600.0, Backoff(80.0, 600.0)),
        (Backoff(40.0, 0.0), 600.5, Backoff(10.0, 600.5)),
        (Backoff(300.0, 0.0), 10_000.0, Backoff(10.0, 10_000.0)),
    ],
    ids=["first-exit", "doubles-10-to-20", "doubles-20-to-40", "160-capped-at-300", "stays-at-300",
         "exactly-600s-later-still-doubles", "just-over-600s-later-resets", "hours-later-resets"],
)
def test_next_backoff(entry: Backoff | None, finished_at: float, expected: Backoff) -> None:
    assert next_backoff(entry, finished_at, finished_at) == expected


@pytest.mark.parametrize(
    ("entry", "finished_at", "now", "waiting", "left"),
    [
        (None, 100.0, 100.0, False, 0.0),
        (Backoff(10.0, 100.0), 100.0, 100.0, True, 10.0),
        (Backoff(10.0, 100.0), 100.0, 103.5, True, 6.5),
        (Backoff(10.0, 100.0), 100.0, 109.999, True, pytest.approx(0.001)),
        (Backoff(10.0, 100.0), 100.0, 110.0, False, 0.0),
        (Backoff(10.0, 100.0), 100.0, 500.0, False, 0.0),
        (Backoff(300.0, 0.0), 100.0, 250.0, True, 150.0),
    ],
    ids=["no-entry", "just-exited", "part-way", "almost-over", "exactly-over", "long-over", "counts-from-the-exit"],
)
def test_in_backoff_and_remaining(entry: Backoff | None, finished_at: float, now: float, waiting: bool,
                                  left: float) -> None:
    assert in_backoff(entry, finished_at, now) is waiting
    assert remaining(entry, finished_at, now) == left


def test_the_back_off_message_sequence() -> None:
    _, after = crash_loop([1.0] * 7)
    assert [go_duration(s) for s in after] == ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]


def test_backoff_is_immutable() -> None:
    entry = Backoff(10.0, 0.0)
    with pytest.raises(AttributeError):
        entry.seconds = 20.0  # type: ignore[misc]
    assert backoff.next_backoff(entry, 1.0, 1.0) is not entry


def test_a_container_that_ran_long_restarts_at_once() -> None:
    waits, after = crash_loop([1.0] * 7 + [3600.0, 1.0])
    assert waits == [0, 10, 20, 40, 80, 160, 300, 0, 10]
    assert after[-2:] == [10, 20]


def test_the_reset_needs_ten_minutes_of_running_not_of_back_off_plus_running() -> None:
    # at 300 s of back-off, the container runs 400 s (< 600 s) and crashes again: no reset
    waits, after = crash_loop([1.0] * 7 + [400.0, 1.0])
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300, 300]
    assert after[-2:] == [300, 300]
