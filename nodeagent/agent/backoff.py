"""The kubelet's crash-loop back-off (client-go flowcontrol.Backoff, as kuberuntime uses it).

Pure: times are seconds passed in. Per container:

    first exit                  -> restart at once, back-off becomes 10 s
    exit within the back-off    -> wait it out (CrashLoopBackOff), then restart; back-off doubles
    ... 20, 40, 80, 160, 300 s (capped)
    an exit more than 2 x 300 s after the last restart (it ran over 10 minutes) -> back to 10 s, at once
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_SECONDS = 10.0
MAX_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Backoff:
    seconds: float  # the current back-off
    last_update: float  # when the restart that set it happened


def _expired(entry: Backoff, finished_at: float) -> bool:
    """hasExpired: the container ran long enough (2 x the cap) since the last restart to be forgiven."""
    return finished_at - entry.last_update > 2 * MAX_SECONDS


def in_backoff(entry: Backoff | None, finished_at: float, now: float) -> bool:
    """IsInBackOffSince: is a restart after the exit at `finished_at` still to wait?"""
    return entry is not None and not _expired(entry, finished_at) and now - finished_at < entry.seconds


def remaining(entry: Backoff | None, finished_at: float, now: float) -> float:
    if entry is None or not in_backoff(entry, finished_at, now):
        return 0.0
    return entry.seconds - (now - finished_at)


def next_backoff(entry: Backoff | None, finished_at: float, now: float) -> Backoff:
    """Next, called as a restart goes ahead at `now`: the back-off doubles, or resets after a long run."""
    if entry is None or _expired(entry, finished_at):
        return Backoff(INITIAL_SECONDS, now)
    return Backoff(min(entry.seconds * 2, MAX_SECONDS), now)
