"""Pod volumes on the node: emptyDir under the state directory, hostPath checked by its type.

    <stateDir>/pods/<uid>/volumes/kubernetes.io~empty-dir/<name>   (tmpfs when medium: Memory)
    <stateDir>/pods/<uid>/volumes/kubernetes.io~downward-api/<name>   (its files; mounted read-only)
    <stateDir>/pods/<uid>/volume-subpaths/<volume>/<container>/<index>   (a volumeMount's subPath)

An emptyDir lives as long as the pod: across container restarts, removed with the pod. A subPath is
mounted for each start of its container, safely (nodeagent.agent.subpath), and the runtime gets that.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import stat
from collections.abc import Collection
from dataclasses import dataclass

from nodeagent.agent import subpath
from nodeagent.agent.downward import downward_files
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Container
from nodeagent.api.model_volumes import DownwardAPIVolumeSource, Volume, downward_source
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.plan.settings import NodeInfo
from nodeagent.runtime.base import Mount

log = logging.getLogger(__name__)

EMPTY_DIR = "kubernetes.io~empty-dir"
DOWNWARD_API = "kubernetes.io~downward-api"


class VolumeError(NodeAgentError):
    """A volume that cannot be set up; the message is the kubelet's FailedMount wording."""


@dataclass(frozen=True, slots=True)
class PodVolumes:
    pod_dir: str
    paths: dict[str, str]  # volume name -> host path
    read_only: frozenset[str] = frozenset()  # volumes always mounted read-only (downwardAPI, as the kubelet)

    def mounts(self, container: Container) -> tuple[Mount, ...]:
        """What the runtime mounts: a volume's directory, or the target prepare_subpaths mounts a subPath on."""
        found = []
        for index, mount in enumerate(container.volume_mounts or []):
            name = mount.valid_name
            source = self.paths[name]
            if mount.sub_path:
                source = subpath.target_path(self.pod_dir, name, container.valid_name, index)
            found.append(Mount(source, mount.mount_path or "", mount.read_only or name in self.read_only,
                               mount.mount_propagation or "None"))
        return tuple(found)

    async def prepare_subpaths(self, container: Container) -> None:
        """Mount the container's subPaths for a start; one that leaves its volume is the kubelet's
        CreateContainerConfigError, with the details only in the log (as the kubelet's)."""
        for index, mount in enumerate(container.volume_mounts or []):
            if not mount.sub_path:
                continue
            name = mount.valid_name
            target = subpath.target_path(self.pod_dir, name, container.valid_name, index)
            try:
                await subpath.bind(self.paths[name], mount.sub_path, target)
            except (NodeAgentError, OSError) as exc:
                log.warning("subPath %r of volumeMount %r of container %r: %s", mount.sub_path, name,
                            container.name, exc)
                step = "create subPath directory" if isinstance(exc, subpath.SubPathError) and exc.making \
                    else "prepare subPath"
                raise RuntimeStartError("CreateContainerConfigError", f'failed to {step} for volumeMount "{name}" '
                                                                      f'of container "{container.name}"') from None


def pod_dir(state_dir: str, uid: str) -> str:
    return os.path.join(state_dir, "pods", uid)


async def set_up(state_dir: str, pod: StaticPod, node: NodeInfo) -> PodVolumes:
    directory = pod_dir(state_dir, pod.uid)
    paths: dict[str, str] = {}
    for volume in pod.pod.spec.volumes or []:
        source = downward_source(volume)
        if source is not None:
            paths[volume.valid_name] = await asyncio.to_thread(_write_downward_api, directory, volume.valid_name,
                                                               source, pod, node)
        else:
            paths[volume.valid_name] = await _set_up_one(directory, volume, _fs_group(pod))
    read_only = frozenset(v.valid_name for v in pod.pod.spec.volumes or [] if downward_source(v) is not None)
    return PodVolumes(directory, paths, read_only)


def _write_downward_api(directory: str, name: str, source: DownwardAPIVolumeSource, pod: StaticPod,
                        node: NodeInfo) -> str:
    """<pod dir>/volumes/kubernetes.io~downward-api/<name>/<item path> for each item (blocking: in a thread).
    Item paths are relative without '..' (validation), so every file stays in the volume."""
    path = os.path.join(directory, "volumes", DOWNWARD_API, name)
    try:
        files = downward_files(source, pod, node)
    except ValueError as exc:
        raise VolumeError(f'MountVolume.SetUp failed for volume "{name}" : {exc}') from None
    os.makedirs(path, mode=0o755, exist_ok=True)
    for relative, (text, mode) in files.items():
        target = os.path.join(path, relative)
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        temporary = f"{target}.tmp"
        with open(temporary, "w") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    return path


def _fs_group(pod: StaticPod) -> int | None:
    security = pod.pod.spec.security_context
    return security.fs_group if security is not None else None


async def _set_up_one(directory: str, volume: Volume, group: int | None) -> str:
    """The volume's path on the node; its directories made in a thread, off the event loop."""
    name = volume.valid_name
    if volume.empty_dir is not None:
        path = os.path.join(directory, "volumes", EMPTY_DIR, name)
        await asyncio.to_thread(_make_empty_dir, path)
        if volume.empty_dir.medium == "Memory" and not await asyncio.to_thread(os.path.ismount, path):
            options = "mode=0777"
            if volume.empty_dir.size_limit is not None:
                options += f",size={volume.empty_dir.size_limit.value()}"
            await _run("mount", "-t", "tmpfs", "-o", options, "tmpfs", path)
        if group is not None:  # as the kubelet's SetVolumeOwnership: the fsGroup's, and what is made in it too
            await asyncio.to_thread(_own, path, group)
        return path
    assert volume.host_path is not None and volume.host_path.path
    await asyncio.to_thread(check_host_path, name, volume.host_path.path, volume.host_path.type)
    return volume.host_path.path


def _make_empty_dir(path: str) -> None:
    os.makedirs(path, mode=0o777, exist_ok=True)
    os.chmod(path, 0o777)  # as the kubelet: any container user may write its emptyDir


def _own(path: str, group: int) -> None:
    os.chown(path, -1, group)
    os.chmod(path, 0o2777)


def check_host_path(name: str, path: str, kind: str) -> None:
    """hostPath types as the kubelet checks them; *OrCreate creates what is missing."""
    prefix = f'MountVolume.SetUp failed for volume "{name}" : hostPath type check failed: {path}'
    if kind == "DirectoryOrCreate" and not os.path.exists(path):
        os.makedirs(path, mode=0o755)
    elif kind == "FileOrCreate" and not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "a"):
            pass
    if kind == "":
        return
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise VolumeError(f"{prefix} does not exist") from None
    wanted = {
        "DirectoryOrCreate": (stat.S_ISDIR, "a directory"), "Directory": (stat.S_ISDIR, "a directory"),
        "FileOrCreate": (stat.S_ISREG, "a file"), "File": (stat.S_ISREG, "a file"),
        "Socket": (stat.S_ISSOCK, "a socket file"), "CharDevice": (stat.S_ISCHR, "a character device"),
        "BlockDevice": (stat.S_ISBLK, "a block device"),
    }
    check, words = wanted[kind]
    if not check(mode):
        raise VolumeError(f"{prefix} is not {words}")


async def tear_down(state_dir: str, uid: str) -> None:
    """Unmount what is mounted in the pod's directory (memory-backed emptyDirs, subPaths), then remove it:
    never while anything is still mounted there, which removing would reach through."""
    directory = pod_dir(state_dir, uid)
    try:
        await subpath.unmount_under(directory)
    except NodeAgentError as exc:
        raise VolumeError(f"{directory} is kept: {exc}") from None
    await asyncio.to_thread(shutil.rmtree, directory, True)


async def _run(*argv: str) -> None:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, stderr = await process.communicate()
    if process.returncode != 0:
        raise VolumeError(f"{' '.join(argv)}: {stderr.decode(errors='replace').strip()}")


MOUNT_POINTS_FILE = "mountpoints"


def ensure_mount_points(directory: str, mounts: tuple[Mount, ...], kept: Collection[str] = ()) -> None:
    """For host-process containers: create missing mount targets on the host, and note each one in
    the pod's directory so that it is removed with the pod (or after a crash, on the next start); the
    `kept` targets are never noted: every pod may mount one (/dev/termination-log), and removing it would
    unmount it from the containers of the pods that still run. A target that cannot be one (through a file,
    a file for a directory) is a RunContainerError."""
    created: list[str] = []
    try:
        for mount in mounts:
            _ensure_mount_point(mount, [] if mount.container_path in kept else created)
    finally:
        if created:
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, MOUNT_POINTS_FILE), "a") as handle:
                handle.writelines(f"{path}\n" for path in created)


def _ensure_mount_point(mount: Mount, created: list[str]) -> None:
    target = mount.container_path
    is_dir = os.path.isdir(mount.host_path)
    try:
        if os.path.lexists(target):
            if os.path.isdir(target) != is_dir:
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))  # mount(2)'s word for either
            return
        parent = target
        while not os.path.lexists(parent):
            created.append(parent)  # removed with the pod if made (and still empty)
            parent = os.path.dirname(parent)
        if is_dir:
            os.makedirs(target, mode=0o755)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            with open(target, "a"):
                pass
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()  # Go's words: "not a directory"
        raise RuntimeStartError("RunContainerError", f'error mounting "{mount.host_path}" to "{target}": '
                                                     f"{reason}") from None


def remove_mount_points(directory: str) -> None:
    """Remove what ensure_mount_points created, deepest first, and only if still empty."""
    try:
        with open(os.path.join(directory, MOUNT_POINTS_FILE)) as handle:
            created = [line.rstrip("\n") for line in handle if line.strip()]
    except FileNotFoundError:
        return
    for path in sorted(set(created), key=len, reverse=True):
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.isfile(path) and os.path.getsize(path) == 0:
                os.unlink(path)
        except OSError:
            pass  # no longer empty: something else uses it now
