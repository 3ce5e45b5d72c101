"""How a container is stopped, as the kubelet and the runtimes decide it. Pure.

    stop_signal(container, image_signal) -> int   lifecycle.stopSignal > the image's STOPSIGNAL > SIGTERM
    kill_grace(spec, probe) -> int                 a liveness/startup probe's own terminationGracePeriodSeconds,
                                                   else the pod's; never less than 2 s

The signal order is containerd's and CRI-O's (KEP-4960): the container's field, else the image's STOPSIGNAL,
else SIGTERM. The grace period is the kubelet's setTerminationGracePeriod with killContainer's minimum.
"""

from __future__ import annotations

import signal

from nodeagent.api.model import Container, PodSpec, Probe
from nodeagent.api.signals import STOP_SIGNALS

MIN_GRACE_SECONDS = 2  # the kubelet never gives a container less (minimumGracePeriodInSeconds)


def stop_signal(container: Container, image_signal: int | None = None) -> int:
    """The signal that asks the container to stop."""
    name = container.lifecycle.stop_signal if container.lifecycle is not None else None
    if name is not None:
        return STOP_SIGNALS[name]  # validated: one of them
    return image_signal if image_signal is not None else int(signal.SIGTERM)


def kill_grace(spec: PodSpec, probe: Probe | None = None) -> int:
    """Seconds between the stop signal and SIGKILL: a probe's own period when it kills, else the pod's."""
    grace = spec.termination_grace_period_seconds
    if probe is not None and probe.termination_grace_period_seconds is not None:
        grace = probe.termination_grace_period_seconds
    return max(grace, MIN_GRACE_SECONDS)
