"""The manifests of a chaos run and the pods they should make run: the model the agent is checked against.

Pods are `chaos-<i>` (files `p<i>.yaml`, renamed to `p<i>-r<k>.yaml`; duplicates `zz-dup-<i>.yaml`, which
sort after them and so lose while a `p` file defines the pod) and `chaos-url-<i>` (the URL source). The
desired set is computed with the agent's own pure merge rules (nodeagent.sources.merge), over the model's
"last valid" memory, which only holds versions the agent was seen running: a file is only made invalid
once its valid version has been confirmed at a convergence point, so what "last valid" means never depends
on how fast the agent read a file.

Containers, by pod index: `main` always (0: a liveness probe watching a "target" child process; 1: ignores
SIGTERM, so every stop lasts the grace period; 2: a plain sleeper), and a second one, `side`, for i % 4 == 3.
Every container carries CHAOS_RUN, CHAOS_ID and CHAOS_UID (tests.chaos.sampler).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from nodeagent.api.manifest import StaticPod, load_manifest
from nodeagent.sources.files import ManifestFile
from nodeagent.sources.merge import Desired, merge_files, merge_sources

# Shell builtins only: the chaos-probe mark on the shell's command line tells the sampler this session is a
# probe, not a second instance of the container, and a command the shell ran (or exec'd last) would lack it,
# and could outlive a killed shell a moment (tests/chaos/test_probe.py).
PROBE = ('read -r p 2>/dev/null < "$CHAOS_TARGET" || exit 1; while read -r key value rest; do '
         '[ "$key" = State: ] && case $value in [RSD]) exit 0;; *) exit 1;; esac; done 2>/dev/null < "/proc/$p/status"; '
         'exit 1')
WITH_TARGET = 'sleep 1000000 & echo $! > "$CHAOS_TARGET"; exec sleep 1000000'
DEAF = "trap '' TERM; exec sleep 1000000"


@dataclass(frozen=True, slots=True)
class Flavour:
    """What differs between runtimes: the image, where the probe target's pid file lives."""

    image: str
    target_dir: str | None  # None: /tmp/target inside the container's own root
    always_pull: bool = False  # plain sleepers pull at every start (a registry fault meets them)


@dataclass
class World:
    run: str
    node: str
    manifests_dir: str
    url: str
    flavour: Flavour
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> content
    url_body: bytes = b""
    generation: dict[str, int] = field(default_factory=dict)  # pod name -> its version
    confirmed: dict[str, list[StaticPod]] = field(default_factory=dict)  # path -> last valid pods seen running
    confirmed_files: dict[str, bytes] = field(default_factory=dict)  # the content at the last convergence
    every_uid: set[str] = field(default_factory=set)

    # -- manifests ----------------------------------------------------------------------------------

    def pod(self, name: str, index: int, *, valid: bool = True) -> dict[str, Any]:
        gen = self.generation.get(name, 0)
        containers = [self._container(name, "main", index % 3)]
        if index % 4 == 3:
            containers.append(self._container(name, "side", 2))
        if not valid:
            containers[0]["resources"] = {"limits": {"memory": "lots"}}  # an editor's slip
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "annotations": {"chaos/generation": str(gen)}},
                "spec": {"terminationGracePeriodSeconds": 2, "hostNetwork": index % 2 == 1,
                         "containers": containers}}

    def _container(self, pod: str, name: str, kind: int) -> dict[str, Any]:
        target = f"{self.flavour.target_dir}/{pod}-{name}" if self.flavour.target_dir else "/tmp/target"
        env = [{"name": "CHAOS_RUN", "value": self.run}, {"name": "CHAOS_ID", "value": f"{pod}/{name}"},
               {"name": "CHAOS_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
               {"name": "CHAOS_TARGET", "value": target}]
        command = [["sh", "-c", WITH_TARGET], ["sh", "-c", DEAF], ["sleep", "1000000"]][kind]
        container: dict[str, Any] = {"name": name, "image": self.flavour.image, "command": command, "env": env}
        if kind == 2 and self.flavour.always_pull:
            container["imagePullPolicy"] = "Always"
        if kind == 0:
            container["livenessProbe"] = {"exec": {"command": ["sh", "-c", PROBE, "chaos-probe"]},
                                          "initialDelaySeconds": 1, "periodSeconds": 1, "failureThreshold": 1}
        return container

    def manifest(self, name: str, index: int, *, valid: bool = True) -> bytes:
        return json.dumps(self.pod(name, index, valid=valid)).encode()

    def url_manifest(self, count: int) -> bytes:
        if count == 0:
            return b""  # empty: no pods (staticPodURLEmptyMeansNone)
        items = [self.pod(f"chaos-url-{i}", 10 + i) for i in range(count)]
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": items}).encode()

    def bump(self, name: str) -> None:
        self.generation[name] = self.generation.get(name, 0) + 1

    def path(self, file: str) -> str:
        return f"{self.manifests_dir}/{file}"

    def is_confirmed_valid(self, file: str) -> bool:
        content = self.files.get(file)
        return content is not None and self.confirmed_files.get(file) == content and self._load(file, content).ok

    # -- what should run ----------------------------------------------------------------------------

    def _load(self, file: str, content: bytes) -> Any:
        return load_manifest(content, origin=self.path(file), source="file", node_name=self.node)

    def desired(self) -> Desired:
        """The pods that should run once the agent has caught up (URL healthy, faults healed)."""
        files = [ManifestFile(self.path(name), hashlib.sha256(content).hexdigest(), self._load(name, content))
                 for name, content in sorted(self.files.items())]
        from_files = merge_files(files, self.confirmed)
        from_url = load_manifest(self.url_body, origin=self.url, source="http", node_name=self.node) \
            if self.url_body else None
        desired = merge_sources(from_files, from_url.pods if from_url is not None and from_url.ok else [])
        self.every_uid.update(pod.uid for pod in desired.pods)
        return desired

    def confirm(self, desired: Desired) -> None:
        """The agent converged on `desired`: what it runs is now each file's last valid version."""
        self.confirmed = desired.last_good
        self.confirmed_files = dict(self.files)
