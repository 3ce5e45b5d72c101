"""A pod's termination (nodeagent.agent.worker runs it): its running containers stopped within the pod's grace
period, group after group in lifecycle.stop_order (the app containers, then the sidecars one by one in reverse):
preStop hooks, the stop signal, SIGKILL for what is still alive when the grace period is over. One container
is stopped the same way when a probe kills it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nodeagent.agent.events import NORMAL, WARNING
from nodeagent.agent.hooks import run_hook
from nodeagent.agent.lifecycle import DesiredContainer, stop_order
from nodeagent.agent.stopping import MIN_GRACE_SECONDS, kill_grace
from nodeagent.agent.supervisor import ContainerSupervisor
from nodeagent.agent.termination import stop_gracefully
from nodeagent.api.model import Probe
from nodeagent.runtime.base import RunningContainer


class PodTerminator(ContainerSupervisor):
    """The pod's containers stopped in the kubelet's order."""

    async def _terminate_containers(self) -> None:
        """Every running container stopped within the pod's grace period, the app containers first, then the
        sidecars one by one in reverse order (lifecycle.stop_order, as the kubelet since sidecars)."""
        running = [DesiredContainer(name, self._kind(name)) for name, slot in self.slots.items()
                   if slot.running is not None]
        await self._stop_in_order(stop_order(running))

    async def _stop_in_order(self, groups: tuple[tuple[str, ...], ...]) -> None:
        """Group after group: preStop hooks, then the stop signal, SIGKILL to those alive when the grace period
        is over. The groups share the pod's grace period; a stop signal gets 2 s at least."""
        grace = float(self.pod.pod.spec.termination_grace_period_seconds)
        clock = self.services.clock
        started = clock.monotonic()
        for group in groups:
            running = {name: c for name in group if (c := self.slots[name].running) is not None}
            for name in running:
                self.services.events.record(self.object_ref(name), NORMAL, "Killing", f"Stopping container {name}")
            left = grace - (clock.monotonic() - started)
            await asyncio.gather(*(self._pre_stop(name, container, left) for name, container in running.items()))
            left = max(grace - (clock.monotonic() - started), MIN_GRACE_SECONDS)
            await stop_gracefully(clock, list(running.values()), left,
                                  lambda c: any(slot.running is c for slot in self.slots.values()),
                                  self._stop_signals(running))

    async def _stop_container(self, name: str, running: RunningContainer, probe: Probe | None = None) -> None:
        """One container stopped as the kubelet's killContainer stops it (a probe's kill, or one that came after
        the pod's termination began): preStop, its stop signal, SIGKILL when the grace period (a killing probe's
        own, if it has one) is over; the hook's time counts in it, the signal gets 2 s at least."""
        clock = self.services.clock
        grace, began = kill_grace(self.pod.pod.spec, probe), clock.monotonic()
        await self._pre_stop(name, running, grace)
        await stop_gracefully(clock, [running], max(grace - (clock.monotonic() - began), MIN_GRACE_SECONDS),
                              lambda c: self.slots[name].running is c, lambda c: self._stop_signal(name, c))

    def _stop_signals(self, running: dict[str, RunningContainer]) -> Callable[[RunningContainer], int]:
        names = {id(c): name for name, c in running.items()}
        return lambda c: self._stop_signal(names[id(c)], c)

    async def _pre_stop(self, name: str, running: RunningContainer, grace: float) -> None:
        container = self.slots[name].container
        handler = container.lifecycle.pre_stop if container.lifecycle else None
        if handler is None or grace <= 0:
            return
        error = await run_hook(handler, runtime=self.services.runtime, running=running, container=container,
                               pod_ip=self.addresses.pod_ip, timeout=grace, clock=self.services.clock)
        if error is not None:
            self.services.events.record(self.object_ref(name), WARNING, "FailedPreStopHook",
                                        f"PreStopHook failed: {error}")
