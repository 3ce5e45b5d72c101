"""Times and durations as Kubernetes and Go spell them: metav1.Time's RFC 3339 and time.Duration's String."""

import datetime as dt

import pytest

from nodeagent.timeformat import go_duration, rfc3339


@pytest.mark.parametrize(
    ("when", "text"),
    [(None, None),
     (dt.datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=dt.UTC), "2024-05-01T12:00:00Z"),
     (dt.datetime(2024, 5, 1, 14, 30, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2024-05-01T12:30:00Z")],
    ids=["none", "fraction-dropped", "offset-converted-to-utc"],
)
def test_rfc3339(when: dt.datetime | None, text: str | None) -> None:
    assert rfc3339(when) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.0004, "0s"), (0.9814, "981ms"), (1.0, "1s"), (10, "10s"), (15.981, "15.981s"), (59, "59s"),
     (60, "1m0s"), (61.5, "1m1.5s"), (80, "1m20s"), (123.0, "2m3s"), (160, "2m40s"), (299.9, "4m59.9s"),
     (300, "5m0s")],
    ids=["0", "under-a-millisecond", "milliseconds", "1", "10", "fraction", "59", "60", "minute-and-fraction",
         "80", "123", "160", "fraction-kept", "300"],
)
def test_go_duration_spells_durations_as_go_does(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text
