"""Times and durations spelled as Kubernetes and Go spell them: the one place for each format.

Pure: datetimes and seconds in, strings out.
"""

from __future__ import annotations

import datetime as dt
from typing import overload


@overload
def rfc3339(when: dt.datetime) -> str: ...
@overload
def rfc3339(when: dt.datetime | None) -> str | None: ...
def rfc3339(when: dt.datetime | None) -> str | None:
    """metav1.Time's JSON: RFC 3339 in UTC, whole seconds ("2024-05-01T12:00:03Z"); None stays None."""
    return None if when is None else when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(seconds: float) -> str:
    """A duration as Go prints a time.Duration cut to milliseconds: 0s, 981ms, 15.981s, 2m3.5s, 5m0s."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    minutes, rest = divmod(millis, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{minutes}m{text}" if minutes else text
