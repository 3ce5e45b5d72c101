"""The `runc` runtime: each container an OCI container (runc, or crun through nodeagent.runcPath), from
an image nodeagent pulled itself, under conmon: the path CRI-O takes, without a containerd.

    image store ensure(image, imagePullPolicy)       -> layers (ErrImagePull on failure)
    bundle: overlay rootfs (layers + a per-container upper dir), config.json (nodeagent.runtime.oci_spec)
    conmon -r runc create   -> container init waiting on its exec FIFO, in its cgroup
    runc start              -> the container runs; conmon keeps stdio, logs and the exit code
    on exit: runc delete, unmount the rootfs
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.runtime import conmon
from nodeagent.runtime.base import ContainerExit, ContainerSpec, ExecResult, RunningContainer
from nodeagent.runtime.monitored import MonitoredContainer, now
from nodeagent.runtime.oci_spec import ImageDefaults, Security, oci_spec
from nodeagent.runtime.procinfo import ProcessIdentity

log = logging.getLogger(__name__)

PREFIX = "runc://"
CAP_SYS_RESOURCE = 24
RUNC_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class PulledImage:
    digest: str
    defaults: ImageDefaults
    layers: tuple[str, ...]  # unpacked layer directories, lowest first


class ImageSource(Protocol):
    async def pull(self, reference: str, policy: str) -> PulledImage:
        """The image, pulled as imagePullPolicy says; RuntimeStartError(ErrImagePull|ErrImageNeverPull)."""


class Rootfs(Protocol):
    async def mount(self, layers: Sequence[str], upper: str, work: str, target: str) -> None: ...

    async def unmount(self, target: str) -> None: ...


def can_lower_oom_score_adj() -> bool:
    """CAP_SYS_RESOURCE in our effective set: without it the kernel refuses negative oom_score_adj values."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


class RuncRuntime:
    name = "runc"
    host_mount_points = False  # volumes are mounted inside the container's own root

    def __init__(self, cgroups: CgroupDriver, state_dir: str, images: ImageSource, rootfs: Rootfs, *,
                 runc_path: str, kernel_log: KernelLog | None = None, systemd_cgroup: bool = False) -> None:
        self.cgroups = cgroups
        self.images = images
        self.rootfs = rootfs
        self.runc_path = runc_path
        self.kernel_log = kernel_log
        self.layout = conmon.ConmonLayout(state_dir)
        self.runc_root = os.path.join(state_dir, "runc")
        self.global_args: tuple[str, ...] = ("--root", self.runc_root,
                                             *(("--systemd-cgroup",) if systemd_cgroup else ()))
        self.lower_oom_allowed = can_lower_oom_score_adj()
        self._oom_warned = False

    async def start(self, spec: ContainerSpec) -> RunningContainer:
        image = await self.images.pull(spec.image, spec.pull_policy)
        oci_id = secrets.token_hex(32)
        bundle = self.layout.bundle(oci_id)
        rootfs = os.path.join(bundle, "rootfs")
        for directory in (rootfs, os.path.join(bundle, "upper"), os.path.join(bundle, "work")):
            os.makedirs(directory, mode=0o700 if directory != rootfs else 0o755)
        try:
            await self.rootfs.mount(image.layers, os.path.join(bundle, "upper"), os.path.join(bundle, "work"), rootfs)
            pod_files = self._pod_files(spec, bundle)
            config = oci_spec(spec, image.defaults, rootfs=rootfs, cgroups_path=spec.cgroup.path,
                              cgroup_version=self.cgroups.version, security=spec_security(spec), netns=spec.netns,
                              pod_files=pod_files, oom_score_adj=self._oom_score_adj(spec.oom_score_adj))
            with open(os.path.join(bundle, "config.json"), "w") as handle:
                json.dump(config, handle)
            os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
            monitored = await conmon.spawn(self.layout, container_id=oci_id, runtime=self.runc_path,
                                           name=f"{spec.pod_namespace}_{spec.pod_name}_{spec.name}",
                                           log_path=spec.log_path, runtime_args=self.global_args)
        except (OSError, NodeAgentError) as exc:
            await self._clean(oci_id)
            if isinstance(exc, RuntimeStartError):
                raise
            raise RuntimeStartError("CreateContainerError", str(exc)) from exc
        container = self._container(spec, monitored, now())
        try:
            container.watch()
            await self._runc("start", oci_id)
        except NodeAgentError as exc:
            container.kill()
            await container.wait()
            raise RuntimeStartError("RunContainerError", str(exc)) from exc
        container.started_at = now()
        if spec.monitor_cgroup is not None:
            with contextlib.suppress(NodeAgentError):
                await self.cgroups.attach(spec.monitor_cgroup, monitored.conmon.pid)
        return container

    async def adopt(self, spec: ContainerSpec, saved: Mapping[str, Any]) -> RunningContainer | ContainerExit:
        monitored = conmon.Monitored(saved["ociId"], ProcessIdentity.from_json(saved["conmon"]),
                                     ProcessIdentity.from_json(saved["container"]))
        container = self._container(spec, monitored, dt.datetime.fromisoformat(saved["startedAt"]))
        if monitored.conmon.alive():
            container.watch()
            return container
        return await container.wait()

    async def exec(self, running: RunningContainer, command: Sequence[str], timeout: float) -> ExecResult:
        """`runc exec`: the container's own process settings (env, user, cwd), another command."""
        assert isinstance(running, MonitoredContainer)
        process = await asyncio.create_subprocess_exec(
            self.runc_path, *self.global_args, "exec", running.monitored.container_id, *command,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            output, _ = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return ExecResult(exit_code=-1, output="timed out")
        return ExecResult(exit_code=process.returncode or 0, output=output.decode(errors="replace").strip()[:1024])

    def _container(self, spec: ContainerSpec, monitored: conmon.Monitored,
                   started_at: dt.datetime) -> MonitoredContainer:
        async def clean() -> None:
            await self._clean(monitored.container_id)

        return MonitoredContainer(spec, monitored, started_at, cgroups=self.cgroups, layout=self.layout,
                                  kernel_log=self.kernel_log, prefix=PREFIX, on_exit=clean)

    async def _clean(self, oci_id: str) -> None:
        """runc delete and the rootfs unmounted; the bundle itself goes with conmon's files."""
        with contextlib.suppress(NodeAgentError):
            await self._runc("delete", "--force", oci_id)
        rootfs = os.path.join(self.layout.bundle(oci_id), "rootfs")
        if os.path.ismount(rootfs):
            await self.rootfs.unmount(rootfs)
        await asyncio.to_thread(shutil.rmtree, self.layout.bundle(oci_id), True)

    async def _runc(self, *args: str) -> str:
        process = await asyncio.create_subprocess_exec(
            self.runc_path, *self.global_args, *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(process.communicate(), RUNC_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise NodeAgentError(f"runc {args[0]}: no answer within {RUNC_TIMEOUT_SECONDS:.0f}s") from None
        if process.returncode != 0:
            raise NodeAgentError(f"runc {args[0]}: {err.decode(errors='replace').strip() or process.returncode}")
        return out.decode(errors="replace")

    def _oom_score_adj(self, wanted: int | None) -> int | None:
        """The plan's value; where the kernel would refuse a negative one (no CAP_SYS_RESOURCE), the
        nearest allowed value (ours), said once — containerd's restrict_oom_score_adj does the same."""
        if wanted is None or wanted >= 0 or self.lower_oom_allowed:
            return wanted
        with open("/proc/self/oom_score_adj") as handle:
            own = int(handle.read().strip())
        if not self._oom_warned:
            log.warning("oom_score_adj %d needs CAP_SYS_RESOURCE, which this agent lacks: containers get %d, "
                        "the nearest allowed value", wanted, max(wanted, own))
            self._oom_warned = True
        return max(wanted, own)

    @staticmethod
    def _pod_files(spec: ContainerSpec, bundle: str) -> dict[str, str]:
        """/etc/hostname, /etc/hosts, /etc/resolv.conf and the termination log, as files in the bundle."""
        files = {
            "/etc/hostname": f"{spec.hostname}\n",
            "/etc/hosts": spec.hosts_file or f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n{spec.hostname}\n",
            "/etc/resolv.conf": spec.resolv_conf if spec.resolv_conf is not None else _node_resolv_conf(),
            "/dev/termination-log": "",
        }
        mounted = {}
        for destination, content in files.items():
            source = os.path.join(bundle, destination.strip("/").replace("/", "_"))
            with open(source, "w") as handle:
                handle.write(content)
            mounted[destination] = source
        return mounted


def spec_security(spec: ContainerSpec) -> Security:
    return Security(privileged=spec.privileged, read_only_root=spec.read_only_root, add=spec.capabilities_add,
                    drop=spec.capabilities_drop, allow_privilege_escalation=spec.allow_privilege_escalation,
                    host_network=spec.netns is None)


def _node_resolv_conf() -> str:
    try:
        with open("/etc/resolv.conf") as handle:
            return handle.read()
    except OSError:
        return ""
