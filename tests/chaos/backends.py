"""What a chaos run needs from its runtime: images, settings, its own faults, what it may leave behind.

ProcessBackend is the `process` runtime (host processes under conmon, no image); the runc and cri
backends add a registry or a containerd the run starts, stops and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from nodeagent.runtime.cri.client import CRIClient
from nodeagent.runtime.cri.mapping import OURS
from tests.chaos.world import Flavour
from tests.integration.containerd import BUSYBOX_IMAGE, TestImages, running_containerd
from tests.integration.harness import AgentHarness
from tests.integration.images import busybox_layer, push_image
from tests.integration.ociimage import build_busybox, build_pause
from tests.integration.registry import Registry, serve_in_netns, start_registry

Action = Callable[[], str | None]


class Backend(Protocol):
    name: str
    monitored: bool  # containers run under conmon (a monitor to kill)

    def flavour(self, root: Path) -> Flavour: ...

    def configure(self, harness: AgentHarness) -> None: ...

    def actions(self, rng: random.Random) -> list[tuple[int, Action]]: ...

    def heal(self) -> None: ...

    def blocks_start(self) -> bool:
        """The agent cannot answer until heal() (its runtime is away): start it without waiting."""

    def leaks(self, harness: AgentHarness) -> list[str]: ...

    def close(self) -> None: ...


class ProcessBackend:
    name = "process"
    monitored = True

    def __init__(self, root: Path) -> None:
        pass

    def flavour(self, root: Path) -> Flavour:
        targets = root / "targets"
        targets.mkdir()
        return Flavour(image="chaos", target_dir=str(targets))

    def configure(self, harness: AgentHarness) -> None:
        harness.configure({"nodeagent": {"runtime": "process"}})

    def actions(self, rng: random.Random) -> list[tuple[int, Action]]:
        return []

    def heal(self) -> None:
        pass

    def blocks_start(self) -> bool:
        return False

    def leaks(self, harness: AgentHarness) -> list[str]:
        return []

    def close(self) -> None:
        pass


class RuncBackend:
    """The `runc` runtime: busybox from a registry the run starts, served into the agent's namespace, where
    the run stops and restarts it. Plain sleepers pull with `Always`, so starts meet the registry's absence."""

    name = "runc"
    monitored = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = start_registry(root / "registry")
        self.pushed = push_image(self.registry, "chaos/busybox", "1.0", [busybox_layer()])
        self.mirror: Registry | None = None

    def flavour(self, root: Path) -> Flavour:
        return Flavour(image=self.pushed.reference, target_dir=None, always_pull=True)

    def configure(self, harness: AgentHarness) -> None:
        harness.configure({"nodeagent": {"runtime": "runc", "insecureRegistries": [self.registry.host]}})
        assert harness.node is not None
        self.mirror = serve_in_netns(self.registry, harness.node.path, self.root / "mirror")

    def actions(self, rng: random.Random) -> list[tuple[int, Action]]:
        return [(2, self._stop), (2, lambda: self._bounce(rng))]

    def _stop(self) -> str | None:
        if self.mirror is None or self.mirror.process is None:
            return None
        self.mirror.stop()
        return "registry-stop"

    def _bounce(self, rng: random.Random) -> str | None:
        if self.mirror is None or self.mirror.process is None:
            return None
        self.mirror.stop()
        time.sleep(rng.uniform(0, 2))
        self.mirror.start()
        return "registry-restart"

    def heal(self) -> None:
        if self.mirror is not None and self.mirror.process is None:
            self.mirror.start()

    def blocks_start(self) -> bool:
        return False

    def leaks(self, harness: AgentHarness) -> list[str]:
        listed = subprocess.run(["runc", "--root", str(harness.state / "runc"), "list", "-q"], capture_output=True,
                                text=True, check=False).stdout.split()
        found = [f"runc container {name}" for name in listed]
        for directory in ("rootfs", "images/leases"):
            with contextlib.suppress(FileNotFoundError):
                found += [f"{directory}/{p.name}" for p in (harness.state / directory).iterdir()]
        return found

    def close(self) -> None:
        try:
            if self.mirror is not None:
                self.mirror.stop()
        finally:
            self.registry.stop()


class CriBackend:
    """The `cri` runtime: a containerd the run starts (tests.integration.containerd), and stops and restarts
    in the middle of whatever the agent is doing. The agent runs in containerd's network namespace."""

    name = "cri"
    monitored = False  # containerd's shims are not conmon

    def __init__(self, root: Path, images: TestImages | None = None) -> None:
        if images is None:  # built here, unless the test session has them already
            workdir = root / "cri-images"
            workdir.mkdir()
            images = TestImages(build_pause(workdir), build_busybox(workdir))
        self._running = running_containerd(images)
        self.containerd = self._running.__enter__()

    def flavour(self, root: Path) -> Flavour:
        return Flavour(image=BUSYBOX_IMAGE, target_dir=None)

    def configure(self, harness: AgentHarness) -> None:
        harness.use_netns(self.containerd.netns)
        harness.configure({"containerRuntimeEndpoint": self.containerd.endpoint, "nodeagent": {"runtime": "cri"}})

    def actions(self, rng: random.Random) -> list[tuple[int, Action]]:
        return [(2, self._stop), (3, lambda: self._bounce(rng))]

    def _stop(self) -> str | None:
        if self.containerd.process is None:
            return None
        self.containerd.stop()
        return "containerd-stop"

    def _bounce(self, rng: random.Random) -> str | None:
        if self.containerd.process is None:
            return None
        self.containerd.stop()
        time.sleep(rng.uniform(0, 2))
        self.containerd.start()
        return "containerd-restart"

    def heal(self) -> None:
        if self.containerd.process is None:
            self.containerd.start()

    def blocks_start(self) -> bool:
        return self.containerd.process is None

    def leaks(self, harness: AgentHarness) -> list[str]:
        async def listed() -> list[str]:
            async with CRIClient(self.containerd.endpoint) as client:
                sandboxes = await client.list_pod_sandbox(labels=OURS)
                containers = await client.list_containers(labels=OURS)
            return [f"sandbox {s.id[:12]}" for s in sandboxes] + [f"container {c.id[:12]}" for c in containers]
        return asyncio.run(listed())

    def close(self) -> None:
        self._running.__exit__(None, None, None)
