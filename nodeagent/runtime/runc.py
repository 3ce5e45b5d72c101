"""The `runc` runtime: each container an OCI container (runc, or crun through nodeagent.runcPath), from
an image nodeagent pulled itself, under conmon: the path CRI-O takes, without a containerd.

    ensure_image   ImageStore.ensure(image, imagePullPolicy)            (ErrImagePull, ErrImageNeverPull, ...)
    start          the image leased to the container ID; overlay rootfs (layers + its own upper dir);
                   config.json (nodeagent.runtime.oci_spec); conmon -r runc create (init waits on its exec
                   FIFO, in its cgroup); started (OCIRuntime.start: runc's exec FIFO read by the agent
                   itself). conmon keeps stdio, CRI logs and the exit code.
    on exit        runc delete, the rootfs unmounted, the lease released, the bundle removed

Files: the bundle (config.json, the pod's /etc files) is conmon's `<stateDir>/containers/<id>`; the root
file system is `<stateDir>/rootfs/<id>/{rootfs,upper,work}`, apart, so that removing a bundle never walks
into a mounted root. runc keeps its state under `<stateDir>/runc` (`--root`). A rootfs directory whose
bundle is gone belongs to no container any more (the agent removes bundles no pod refers to): it is
deleted, unmounted and released at the next start or removal of a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from nodeagent.api.signals import parse_signal
from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.images.errors import ImageError, MountError
from nodeagent.images.overlay import mount_rootfs, unmount
from nodeagent.images.store import Image, ImageStore, PullPolicy
from nodeagent.runtime import conmon
from nodeagent.runtime.base import (
    AdoptionRecord,
    ContainerExit,
    ContainerSpec,
    ExecResult,
    FoundContainer,
    ImageReady,
    RunningContainer,
)
from nodeagent.runtime.devices import host_devices
from nodeagent.runtime.execoutput import message, read_capped
from nodeagent.runtime.image_user import resolve_user
from nodeagent.runtime.monitored import MonitoredContainer, TakenBack, now
from nodeagent.runtime.oci_runtime import OCIRuntime, available_capabilities, find_oci_runtime, plain_message
from nodeagent.runtime.oci_spec import ImageDefaults, Security, oci_spec, systemd_cgroups_path
from nodeagent.runtime.podfiles import OomScoreAdj, write_bundle_files
from nodeagent.runtime.seccomp import oci_seccomp
from nodeagent.runtime.security import CONFIG_ERROR, refuse_terminal, verify_run_as_non_root
from nodeagent.runtime.session import ExecCommand

log = logging.getLogger(__name__)

PREFIX = "runc://"


class RuncRuntime(conmon.ConmonBundles):
    name = "runc"
    host_mount_points = False  # volumes are mounted inside the container's own root

    def __init__(self, cgroups: CgroupDriver, state_dir: str, images: ImageStore, *, runc_path: str,
                 kernel_log: KernelLog | None = None, systemd_cgroup: bool = False) -> None:
        self.cgroups = cgroups
        self.images = images
        self.kernel_log = kernel_log
        self.systemd_cgroup = systemd_cgroup
        self.layout = conmon.ConmonLayout(state_dir)
        self.rootfs_dir = os.path.join(state_dir, "rootfs")
        self.runc: OCIRuntime = find_oci_runtime(runc_path, state_dir=state_dir, systemd_cgroup=systemd_cgroup)
        self.capabilities = available_capabilities()
        self._live: set[str] = set()  # containers this agent started or adopted and has not removed
        self.oom_score_adj = OomScoreAdj(self.capabilities)
        self.taken_back = TakenBack()
        self._capabilities_warned = False

    # -- the Runtime protocol ---------------------------------------------------------------------------

    async def prepare(self) -> None:
        """At the agent's start: the image store's staging directories of pulls an earlier agent was killed in."""
        await self.images.remove_interrupted_pulls()

    async def ensure_image(self, spec: ContainerSpec, on_pull: Callable[[], None]) -> ImageReady | None:
        """Present already (and the policy is not Always): nothing is fetched, no Pulling event. Else a pull,
        as the kubelet does for Always even when the digest is unchanged (it asks the registry)."""
        began = time.monotonic()
        try:
            if spec.pull_policy != PullPolicy.ALWAYS.value:
                present = await self.images.get(spec.image)
                if present is not None:
                    return ImageReady(image_ref=present.repo_digest, pulled=False)
            if spec.pull_policy != PullPolicy.NEVER.value:
                on_pull()
            image = await self.images.ensure(spec.image, spec.pull_policy)
        except ImageError as exc:
            raise RuntimeStartError(exc.reason, exc.message) from exc
        return ImageReady(image_ref=image.repo_digest, pulled=True, seconds=time.monotonic() - began,
                          size_bytes=await self.images.size_bytes(image))

    async def start(self, spec: ContainerSpec) -> RunningContainer:
        refuse_terminal(spec, "runc")
        if spec.share_process_namespace:
            raise RuntimeStartError(CONFIG_ERROR, "spec.shareProcessNamespace: the runc runtime cannot give a pod's "
                                                  "containers one PID namespace yet (nothing would hold it while "
                                                  "they restart); use the cri runtime")
        oci_id = secrets.token_hex(32)
        self._live.add(oci_id)
        try:
            monitored, stop_signal = await self._create(spec, oci_id)
        except BaseException:
            await asyncio.shield(self._undo(oci_id))
            raise
        container = self._container(spec, monitored, now(), stop_signal)
        container.watch()
        await container.let_run(self.runc.start(oci_id, monitored.container), failures=(NodeAgentError,), what="")
        await self._remove_orphans()  # after the start: off its path
        return container

    async def adopt(self, spec: ContainerSpec, saved: AdoptionRecord) -> RunningContainer | ContainerExit:
        """Running: watched again. Ended while the agent was away: conmon's exit file says how, then removed."""
        monitored, started_at = conmon.adopted(saved)
        self._live.add(monitored.container_id)
        stop_signal = saved.details.get("imageStopSignal")
        container = self._container(spec, monitored, started_at, stop_signal if isinstance(stop_signal, int) else None)
        # conmon's pidfd, opened against pid reuse, is the check that it lives: one read of its /proc entry
        return container if self.taken_back.watch(container) else await container.wait()

    def agent_ready(self) -> None:
        self.taken_back.agent_ready()

    async def find_running(self, pod_uid: str) -> list[FoundContainer]:
        """The pod's containers under conmon that runc says run: one created and never started (a start cut
        short) does not."""
        found = [f for f in await asyncio.to_thread(conmon.find_running, self.layout, pod_uid)
                 if await self._status(f.saved.container_id) == "running"]
        self._live.update(f.saved.container_id for f in found)
        return found

    async def find_ended(self, pod_uid: str, name: str, attempt: int) -> AdoptionRecord | None:
        return await asyncio.to_thread(conmon.find_ended, self.layout, pod_uid, name, attempt)

    async def _status(self, oci_id: str) -> str | None:
        try:
            state = json.loads(await self.runc.run("state", oci_id))
        except (NodeAgentError, ValueError) as exc:
            log.warning("container %s: its state: %s", oci_id, exc)
            return None
        return state.get("status") if isinstance(state, dict) else None

    async def discard(self, saved: AdoptionRecord) -> None:
        """Its process and conmon killed, its bundle removed, then the container itself (runc's state, the
        rootfs mount, the image lease)."""
        oci_id = await asyncio.to_thread(conmon.discard, self.layout, saved)
        if oci_id is not None:
            self._live.add(oci_id)
            await self._remove(oci_id)

    async def exec(self, running: RunningContainer, command: Sequence[str], timeout: float) -> ExecResult:
        """`runc exec`: the container's namespaces, cgroup, user, environment and working directory (its
        config.json's process), another command. On timeout the command is killed, not left behind."""
        assert isinstance(running, MonitoredContainer)
        oci_id = running.monitored.container_id
        pid_file = os.path.join(self.layout.bundle(oci_id), f"exec-{secrets.token_hex(4)}.pid")
        process = await asyncio.create_subprocess_exec(
            *self.runc.argv("exec", "--pid-file", pid_file, oci_id, *command), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            assert process.stdout is not None
            output, _ = await asyncio.wait_for(asyncio.gather(read_capped(process.stdout), process.wait()), timeout)
        except TimeoutError:
            return ExecResult(exit_code=-1, output=f"command timed out after {timeout:g}s")
        finally:
            if process.returncode is None:
                # runc first: were it to exit on its own meanwhile, kill() would reap it behind asyncio's back
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                _kill_pid_in(pid_file)  # then the command, which outlives a killed runc exec
                await asyncio.shield(process.wait())
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pid_file)
        return ExecResult(exit_code=process.returncode or 0, output=message(output))

    def exec_command(self, running: RunningContainer, command: Sequence[str], *, tty: bool) -> ExecCommand:
        """`runc exec` in the foreground, its stdio the session's pipes or terminal; with a terminal, `--tty`:
        runc copies between it and the container's console, and passes on its size (SIGWINCH)."""
        assert isinstance(running, MonitoredContainer)
        oci_id = running.monitored.container_id
        pid_file = os.path.join(self.layout.bundle(oci_id), f"exec-{secrets.token_hex(4)}.pid")

        def finish(killed: bool) -> None:
            if killed:
                _kill_pid_in(pid_file)  # the command outlives a killed runc exec
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pid_file)

        return ExecCommand(tuple(self.runc.argv("exec", *(["--tty"] if tty else []), "--pid-file", pid_file,
                                                     oci_id, *command)), finish=finish)

    # -- creating -------------------------------------------------------------------------------------

    async def _create(self, spec: ContainerSpec, oci_id: str) -> tuple[conmon.Monitored, int | None]:
        """Image lease, root file system, bundle, then conmon with `runc create`: the container waits to start.
        With it, the image's STOPSIGNAL (None: it has none, or one nobody knows)."""
        bundle, root = self.layout.bundle(oci_id), os.path.join(self.rootfs_dir, oci_id)
        rootfs, upper, work = (os.path.join(root, name) for name in ("rootfs", "upper", "work"))
        try:
            # ensure_image pulled for Always just before: taking it from the store now keeps the same digest
            image = await asyncio.to_thread(self._directories_and_lease, spec, oci_id, bundle, root,
                                            (rootfs, upper, work))
            if image is None:  # gone from the store since (a prune): pulled again, as its policy allows
                policy = PullPolicy.IF_NOT_PRESENT if spec.pull_policy == PullPolicy.ALWAYS.value else spec.pull_policy
                image = await self.images.ensure(spec.image, policy, holder=oci_id)
            verify_run_as_non_root(spec, image.user)
            await mount_rootfs(image.layers, upper, work, rootfs)
            await asyncio.to_thread(self._write_config, spec, image, bundle, rootfs)
        except ImageError as exc:
            raise RuntimeStartError(exc.reason, exc.message) from exc
        except OSError as exc:
            raise RuntimeStartError("CreateContainerError", f"preparing the container: {exc}") from exc
        try:
            monitored = await conmon.spawn(self.layout, container_id=oci_id, runtime=self.runc.binary,
                                           name=f"{spec.pod_namespace}_{spec.pod_name}_{spec.name}",
                                           log_path=spec.log_path, runtime_args=self.runc.global_args,
                                           stdin=spec.stdin, stdin_once=spec.stdin_once)
        except RuntimeStartError as exc:  # conmon relays runc's own log record
            raise RuntimeStartError(exc.reason, plain_message(exc.message)) from exc
        return monitored, parse_signal(image.stop_signal) if image.stop_signal else None

    def _directories_and_lease(self, spec: ContainerSpec, oci_id: str, bundle: str, root: str,
                               parts: tuple[str, ...]) -> Image | None:
        """The container's directories and its log's, then the image leased to it if the store has all of it
        (blocking: one thread hop for what took eight). The directories first: every lease has one that ends it."""
        _make_directories(bundle, root, parts)
        os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
        return self.images.lease_present(spec.image, oci_id)

    def _write_config(self, spec: ContainerSpec, image: Image, bundle: str, rootfs: str) -> None:
        """config.json and the pod's /etc files, written into the bundle (blocking: run in a thread)."""
        host_network = spec.netns is None
        if host_network:  # the node's UTS namespace, so the node's name, as containerd does
            spec = dataclasses.replace(spec, hostname=socket.gethostname())
        user = image.user if spec.run_as_user is not None else resolve_user(rootfs, image.user)
        defaults = ImageDefaults(entrypoint=image.entrypoint, cmd=image.cmd, env=image.env,
                                 working_dir=image.working_dir, user=user)
        security = Security(privileged=spec.privileged, read_only_root=spec.read_only_root,
                            add=spec.capabilities_add, drop=spec.capabilities_drop,
                            allow_privilege_escalation=spec.allow_privilege_escalation, host_network=host_network,
                            host_pid=spec.host_pid, host_ipc=spec.host_ipc)
        cgroups_path = systemd_cgroups_path(spec.cgroup.path) if self.systemd_cgroup else spec.cgroup.path
        config = oci_spec(spec, defaults, rootfs=rootfs, cgroups_path=cgroups_path,
                          cgroup_version=self.cgroups.version, security=security, netns=spec.netns,
                          pod_files=write_pod_files(spec, bundle),
                          oom_score_adj=self.oom_score_adj.allowed(spec.oom_score_adj))
        self._restrict_capabilities(config)
        if spec.sysctls:  # in the pod's network namespace, or the container's IPC one
            config["linux"]["sysctl"] = dict(spec.sysctls)
        if spec.privileged:  # every host device, as containerd gives a privileged container
            config["linux"]["devices"] = host_devices()
            config["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
        else:  # a privileged container runs unconfined, as with containerd
            seccomp = oci_seccomp(spec.seccomp_profile, spec.seccomp_localhost,
                                  config["process"]["capabilities"]["bounding"])
            if seccomp is not None:
                config["linux"]["seccomp"] = seccomp
        with open(os.path.join(bundle, "config.json"), "w") as handle:
            json.dump(config, handle)

    def _restrict_capabilities(self, config: dict[str, Any]) -> None:
        """Capabilities this agent does not hold itself cannot be given (runc's capset would fail): dropped,
        and said once."""
        capabilities = config["process"]["capabilities"]
        dropped = set()
        for kind, wanted in capabilities.items():
            capabilities[kind] = [name for name in wanted if name in self.capabilities]
            dropped |= set(wanted) - set(capabilities[kind])
        if dropped and not self._capabilities_warned:
            log.warning("this agent lacks %s: containers cannot be given them", ", ".join(sorted(dropped)))
            self._capabilities_warned = True

    def _container(self, spec: ContainerSpec, monitored: conmon.Monitored, started_at: dt.datetime,
                   image_stop_signal: int | None) -> MonitoredContainer:
        async def removed() -> None:
            await self._remove(monitored.container_id)
            await self._remove_orphans()

        return MonitoredContainer(spec, monitored, started_at, cgroups=self.cgroups, layout=self.layout,
                                  kernel_log=self.kernel_log, prefix=PREFIX, on_exit=removed,
                                  image_stop_signal=image_stop_signal)

    # -- removing -------------------------------------------------------------------------------------

    async def _undo(self, oci_id: str) -> None:
        """A start that failed (or was cancelled) half-way: everything it made, gone; first its conmon and
        `runc create`, if it was cut short while they ran (they would go on and make the container)."""
        await asyncio.to_thread(conmon.abandon, self.layout, oci_id)
        await self._remove(oci_id)

    async def _remove(self, oci_id: str) -> None:
        """runc delete, the rootfs unmounted, the image lease released, the rootfs directory removed.
        Idempotent; the order lets a crash at any step leave something the next orphan sweep finishes."""
        try:
            await self.runc.run("delete", "--force", oci_id)  # a container that does not exist is fine
        except NodeAgentError as exc:
            log.warning("container %s: %s", oci_id, exc)
        root = os.path.join(self.rootfs_dir, oci_id)
        try:
            await unmount(os.path.join(root, "rootfs"))
        except MountError as exc:  # never remove files through a mount that is still there
            log.error("container %s: %s; its files stay in %s", oci_id, exc.message, root)
            return
        await self.images.release(oci_id)
        await asyncio.to_thread(shutil.rmtree, root, True)
        self._live.discard(oci_id)

    async def _remove_orphans(self) -> None:
        """Root file systems of containers whose bundle is gone (no pod refers to them any more)."""
        try:
            names = await asyncio.to_thread(os.listdir, self.rootfs_dir)
        except FileNotFoundError:
            return
        for oci_id in names:
            if oci_id in self._live or os.path.isdir(self.layout.bundle(oci_id)):
                continue
            log.info("removing container %s: no pod refers to it", oci_id)
            self._live.add(oci_id)
            await self._remove(oci_id)


def _make_directories(bundle: str, root: str, parts: tuple[str, ...]) -> None:
    os.makedirs(bundle, mode=0o700)
    os.makedirs(root, mode=0o700)
    for directory in parts:
        os.mkdir(directory, 0o755)


def write_pod_files(spec: ContainerSpec, bundle: str) -> dict[str, str]:
    """/etc/hostname, /etc/hosts and /etc/resolv.conf as files in the bundle, for bind mounts: {path in the
    container: file}. The pod's own, or the node's on the node's network, as the kubelet. (The termination
    message file is a mount of the attempt's own, at the container's terminationMessagePath.)"""
    return write_bundle_files(bundle, {
        "/etc/hostname": f"{spec.hostname}\n",
        "/etc/hosts": spec.hosts_file if spec.hosts_file is not None else _read("/etc/hosts"),
        "/etc/resolv.conf": spec.resolv_conf if spec.resolv_conf is not None else _read("/etc/resolv.conf"),
    })


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _kill_pid_in(pid_file: str) -> None:
    try:
        with open(pid_file) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
