"""Events as the kubelet records them: typed, with a reason, counted when they repeat.

Kept in memory, newest last, at most MAX_EVENTS; served as a `v1 EventList`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from nodeagent.timeformat import rfc3339

log = logging.getLogger(__name__)

MAX_EVENTS = 1000
NORMAL = "Normal"
WARNING = "Warning"


@dataclass(frozen=True, slots=True)
class ObjectRef:
    kind: str
    name: str
    namespace: str = ""
    uid: str = ""
    field_path: str = ""

    def to_json(self) -> dict[str, str]:
        out = {"kind": self.kind, "name": self.name, "apiVersion": "v1"}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    type: str
    reason: str
    message: str
    involved: ObjectRef
    count: int
    first_timestamp: dt.datetime
    last_timestamp: dt.datetime

    def to_json(self, host: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": self.name, "namespace": self.involved.namespace or "default"},
            "type": self.type,
            "reason": self.reason,
            "message": self.message,
            "involvedObject": self.involved.to_json(),
            "count": self.count,
            "firstTimestamp": rfc3339(self.first_timestamp),
            "lastTimestamp": rfc3339(self.last_timestamp),
            "source": {"component": "nodeagent", "host": host},
            "reportingComponent": "nodeagent",
            "reportingInstance": host,
        }


class EventRecorder:
    """Records events; the same (object, type, reason, message) again only raises its count."""

    def __init__(self, clock: Callable[[], dt.datetime], *, limit: int = MAX_EVENTS) -> None:
        self._clock = clock
        self._limit = limit
        self._events: OrderedDict[tuple[Any, ...], Event] = OrderedDict()
        self._serial = itertools.count(1)

    def record(self, involved: ObjectRef, kind: str, reason: str, message: str) -> Event:
        now = self._clock()
        key = (involved, kind, reason, message)
        existing = self._events.pop(key, None)
        if existing is not None:
            event = replace(existing, count=existing.count + 1, last_timestamp=now)
        else:
            event = Event(name=f"{involved.name}.{next(self._serial):x}", type=kind, reason=reason,
                          message=message, involved=involved, count=1, first_timestamp=now, last_timestamp=now)
        self._events[key] = event
        while len(self._events) > self._limit:
            self._events.popitem(last=False)
        log.log(logging.WARNING if kind == WARNING else logging.INFO, "event %s %s %s/%s: %s",
                kind, reason, involved.kind, involved.name, message)
        return event

    def events(self) -> list[Event]:
        return sorted(self._events.values(), key=lambda e: e.last_timestamp)
