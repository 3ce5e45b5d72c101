"""How much a pull may unpack: a limit per layer and one for all the layers a pull unpacks.

What counts is a layer's uncompressed tar stream (headers and contents, the data of sparse files but
not their holes), as the entries declare it: an entry over the limit is refused from its header, before
a byte of it is written, so a small compressed blob cannot fill the node. The pull's count is shared by
its layers, unpacked in parallel threads; layers already in the store cost nothing.

    budget = PullBudget(UnpackLimits(layer_bytes=..., pull_bytes=...))
    layer = budget.layer("sha256:...")     # one per layer unpacked
    layer.reach(uncompressed_offset)       # raises ImagePullError past either limit
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from nodeagent.images.errors import ImagePullError

GIB = 1 << 30
DEFAULT_LAYER_BYTES = 4 * GIB
DEFAULT_PULL_BYTES = 8 * GIB
LAYER_SETTING = "nodeagent.imageMaxLayerSize"
PULL_SETTING = "nodeagent.imageMaxPullSize"


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    layer_bytes: int = DEFAULT_LAYER_BYTES
    pull_bytes: int = DEFAULT_PULL_BYTES


class PullBudget:
    """The uncompressed bytes of one pull's layers, counted across the threads unpacking them."""

    def __init__(self, limits: UnpackLimits) -> None:
        self.limits = limits
        self._used = 0
        self._lock = threading.Lock()

    def layer(self, label: str) -> LayerBudget:
        return LayerBudget(self, label)

    def charge(self, count: int, label: str) -> None:
        with self._lock:
            self._used += count
            used = self._used
        if used > self.limits.pull_bytes:
            raise ImagePullError(f"layer {label}: the image's layers unpack to more than "
                                 f"{_size(self.limits.pull_bytes)} (the limit set by {PULL_SETTING})")


class LayerBudget:
    """One layer's count: `reach(offset)` when the layer's uncompressed stream has reached `offset` bytes,
    or an entry declares it will."""

    def __init__(self, pull: PullBudget, label: str) -> None:
        self._pull = pull
        self._label = label
        self._reached = 0

    def reach(self, offset: int) -> None:
        if offset <= self._reached:
            return
        limit = self._pull.limits.layer_bytes
        if offset > limit:
            raise ImagePullError(f"layer {self._label}: unpacks to more than {_size(limit)} "
                                 f"(the limit set by {LAYER_SETTING})")
        self._pull.charge(offset - self._reached, self._label)
        self._reached = offset


def _size(count: int) -> str:
    """A byte count as a Kubernetes quantity, in the largest binary unit that divides it."""
    for unit, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if count and count % (1 << shift) == 0:
            return f"{count >> shift}{unit}"
    return str(count)
