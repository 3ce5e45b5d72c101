"""The kubelet's crash-loop back-off (client-go flowcontrol.Backoff, as kuberuntime uses it).

Pure: times are seconds passed in. Per container:

    first exit                  -> restart at once, back-off becomes 10 s
    exit within the back-off    -> wait it out (CrashLoopBackOff), then restart; back-off doubles
    ... 20, 40, 80, 160, 300 s (capped)
    an exit more than 2 x 300 s after the previous one -> back to 10 s ("reset after 10 minutes")
"""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_SECONDS = 10.0
MAX_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class Backoff:
    seconds: float  # the current back-off
    last_update: float  # the finish time of the exit that set it


def in_backoff(entry: Backoff | None, finished_at: float, now: float) -> bool:
    """IsInBackOffSince: is a restart after the exit at `finished_at` still to wait?"""
    return entry is not None and now - finished_at < entry.seconds


def remaining(entry: Backoff | None, finished_at: float, now: float) -> float:
    return 0.0 if entry is None else max(entry.seconds - (now - finished_at), 0.0)


def next_backoff(entry: Backoff | None, finished_at: float) -> Backoff:
    """Next: called when a restart goes ahead; doubles the back-off, or resets it after a long run."""
    if entry is None or finished_at - entry.last_update > 2 * MAX_SECONDS:
        return Backoff(INITIAL_SECONDS, finished_at)
    return Backoff(min(entry.seconds * 2, MAX_SECONDS), finished_at)


def describe(seconds: float) -> str:
    """Go's time.Duration spelling of a back-off: 10s, 1m20s, 5m0s."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    return f"{whole // 60}m{whole % 60}s"
