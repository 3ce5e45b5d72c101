"""The `process` runtime: containers as host processes, each in its own cgroup, session and mounts.

Each container runs under conmon (nodeagent.runtime.conmon), with nodeagent's own minimal "OCI
runtime" behind it: `create` starts the bundle's run script, which joins the mount namespace the agent
prepared (nodeagent.runtime.mountns: volumes, a fresh /sys, a read-only /) and the pod's network, then
waits on a FIFO in the bundle; the agent moves that process into its cgroups, sets its oom_score_adj and
opens the FIFO; then the shell changes directory, sets the container's exact environment (env -i), drops
to the container's user and execs the command: three execs from the go to the first instruction. So the
command's first instruction already runs in its cgroup, and conmon keeps its stdio, logs and exit code
whether or not the agent is running.

    agent: bundle, [mount namespace: /sys, volumes, / read-only]
    conmon -> nodeagent-process-oci create -> setsid sh <bundle>/run
      -> [nsenter --mount=<prepared> --net=<pod netns>] sh (waits on <bundle>/start)
    agent: attach to cgroup, oom_score_adj, write "go"
      -> cd, env -i <env>, setpriv, exec command

setpriv gives the command its user, groups, capabilities (the runtime default set with the container's
securityContext.capabilities; all with privileged) and no_new_privs (nodeagent.runtime.security).

A pod with its own network (not hostNetwork) gets its namespace, its /etc/hosts and /etc/resolv.conf
(bind-mounted from the bundle) and a /sys that shows its own interfaces, not the node's.

cgroup v1 has no memory.oom.group, so when the kernel OOM-kills one process of a container the agent
kills the rest, as v2 does with oom.group = 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import functools
import logging
import os
import secrets
import shlex
import shutil
from collections.abc import Callable, Mapping, Sequence

from nodeagent.cgroups.driver import CgroupDriver
from nodeagent.cgroups.kmsg import KernelLog
from nodeagent.durable import write_atomically
from nodeagent.errors import NodeAgentError, RuntimeStartError
from nodeagent.runtime import conmon, mountns
from nodeagent.runtime.base import (
    AdoptionRecord,
    ContainerExit,
    ContainerSpec,
    ExecResult,
    FoundContainer,
    ImageReady,
    RunningContainer,
)
from nodeagent.runtime.execoutput import message, read_capped
from nodeagent.runtime.monitored import MonitoredContainer, TakenBack, now
from nodeagent.runtime.oci_runtime import available_capabilities
from nodeagent.runtime.podfiles import OomScoreAdj, bundle_path, write_bundle_files
from nodeagent.runtime.security import refuse_unsupported, setpriv_argv, verify_run_as_non_root
from nodeagent.runtime.session import ExecCommand

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RELEASE_TIMEOUT_SECONDS = 5.0
PREFIX = "process://"

# The OCI runtime face conmon talks to. Only `create` is needed: the agent starts, signals and removes.
OCI_RUNTIME = r"""#!/bin/sh
# nodeagent process runtime: what conmon calls as its OCI runtime. Written by nodeagent; do not edit.
set -eu
command=$1
shift
case "$command" in
create)
  bundle=. pidfile=
  while [ $# -gt 1 ]; do
    case "$1" in
      --bundle) bundle=$2; shift 2 ;;
      --pid-file) pidfile=$2; shift 2 ;;
      *) shift ;;
    esac
  done
  # an asynchronous command's stdin is /dev/null unless redirected: conmon's (a pipe with stdin: true) through 9
  exec 9<&0
  setsid /bin/sh "$bundle/run" <&9 9<&- &
  echo $! > "$pidfile"
  ;;
*) echo "nodeagent process runtime: $command is not supported" >&2; exit 1 ;;
esac
"""
# $0 the bundle's run script (abandon() finds the waiting shell by it), $1 the start FIFO, $2 the workdir, then
# env, setpriv and the command. Nothing here is built from a manifest: values only come in as arguments.
LAUNCHER = 'read -r go < "$1" || exit 125; cd -- "$2" || exit 125; shift 2; exec "$@"'


class ProcessRuntime(conmon.ConmonBundles):
    name = "process"
    host_mount_points = True  # volumes are bind-mounted over paths of the host's own tree

    def __init__(self, cgroups: CgroupDriver, state_dir: str, kernel_log: KernelLog | None = None) -> None:
        self.cgroups = cgroups
        self.kernel_log = kernel_log
        self.layout = conmon.ConmonLayout(state_dir)
        self.oci_runtime = os.path.join(state_dir, "bin", "nodeagent-process-oci")
        self.capabilities = available_capabilities()
        self.oom_score_adj = OomScoreAdj(self.capabilities)
        self.taken_back = TakenBack()
        self._install_oci_runtime()

    def _install_oci_runtime(self) -> None:
        """Written once (not at every start: a full stateDir must not keep the agent from taking its pods
        back); a failure is said, and the containers it keeps from starting say it again."""
        try:
            with open(self.oci_runtime, "rb") as handle:
                if handle.read() == OCI_RUNTIME.encode():
                    return
        except OSError:
            pass
        try:
            write_atomically(self.oci_runtime, OCI_RUNTIME.encode(), mode=0o755)
        except OSError as exc:
            log.error("writing the process runtime's OCI runtime %s: %s", self.oci_runtime, exc)

    async def ensure_image(self, spec: ContainerSpec, on_pull: Callable[[], None]) -> ImageReady | None:
        return None  # the image is only recorded: commands run from the host's own tree

    async def start(self, spec: ContainerSpec) -> RunningContainer:
        verify_run_as_non_root(spec, str(os.geteuid()))  # without runAsUser, it runs as the agent does
        refuse_unsupported(spec)
        env = container_env(spec)
        command = resolved_command(spec, env)
        oci_id = secrets.token_hex(32)
        bundle = self.layout.bundle(oci_id)
        entry = [*exact_env(env), *setpriv_argv(spec, self.capabilities, host_tool("setpriv")), *command]

        def script(namespace: mountns.MountNamespace | None) -> str:
            return run_script(launcher_argv(spec, bundle, namespace, entry))

        try:
            namespace = await asyncio.to_thread(_write_bundle, spec, bundle, mount_plan(spec, bundle), script)
        except OSError as exc:
            conmon.abandon(self.layout, oci_id)  # its bundle: no process has it yet
            # the container could not be created (its bundle, its mounts): as the kubelet's CreateContainer failing
            raise RuntimeStartError("CreateContainerError", f"preparing the container: {exc}") from exc
        try:
            return await self._run(spec, oci_id, bundle, namespace)
        finally:
            if namespace is not None:
                namespace.close()

    async def _run(self, spec: ContainerSpec, oci_id: str, bundle: str,
                   namespace: mountns.MountNamespace | None) -> RunningContainer:
        """conmon started on the written bundle; the process moved into its cgroup, then released."""
        try:
            monitored = await conmon.spawn(self.layout, container_id=oci_id, runtime=self.oci_runtime,
                                           name=f"{spec.pod_namespace}_{spec.pod_name}_{spec.name}",
                                           log_path=spec.log_path, stdin=spec.stdin, stdin_once=spec.stdin_once)
        except BaseException:  # failed, or cancelled (the agent stopping): nothing may wait on its FIFO
            conmon.abandon(self.layout, oci_id)
            raise
        container = self._container(spec, monitored, now())

        async def into_its_cgroup_then_released() -> None:
            await self.cgroups.attach(spec.cgroup.path, monitored.container.pid)
            self._set_oom_score_adj(monitored.container.pid, spec.oom_score_adj)
            container.watch()
            await release(bundle)
            if namespace is not None:  # its nsenter has it open once joined: the agent's descriptor may go
                await namespace.close_once_joined(monitored.container.pid)

        await container.let_run(into_its_cgroup_then_released(), failures=(OSError, NodeAgentError),
                                what="preparing the process: ")
        return container

    async def adopt(self, spec: ContainerSpec, saved: AdoptionRecord) -> RunningContainer | ContainerExit:
        """Take a container back after an agent restart: watch it if it runs, else say how it ended."""
        monitored, started_at = conmon.adopted(saved)
        container = self._container(spec, monitored, started_at)
        # conmon's pidfd, opened against pid reuse, is the check that it lives: one read of its /proc entry
        return container if self.taken_back.watch(container) else await container.wait()

    def agent_ready(self) -> None:
        self.taken_back.agent_ready()

    async def find_running(self, pod_uid: str) -> list[FoundContainer]:
        return await asyncio.to_thread(conmon.find_running, self.layout, pod_uid)

    async def find_ended(self, pod_uid: str, name: str, attempt: int) -> AdoptionRecord | None:
        return await asyncio.to_thread(conmon.find_ended, self.layout, pod_uid, name, attempt)

    def _container(self, spec: ContainerSpec, monitored: conmon.Monitored,
                   started_at: dt.datetime) -> MonitoredContainer:
        return MonitoredContainer(spec, monitored, started_at, cgroups=self.cgroups, layout=self.layout,
                                  kernel_log=self.kernel_log, prefix=PREFIX)

    async def exec(self, running: RunningContainer, command: Sequence[str], timeout: float) -> ExecResult:
        """A command in the container's cgroup, mount namespace, user, capabilities, working directory and
        environment."""
        assert isinstance(running, MonitoredContainer)
        spec = running.spec
        argv = ["/bin/sh", "-c", 'read -r go || exit 125; exec "$@"', "nodeagent-exec",
                *self._enter_argv(running, command)]
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            start_new_session=True)
        assert process.stdin is not None
        try:
            await self.cgroups.attach(spec.cgroup.path, process.pid)
            process.stdin.write(b"go\n")
            process.stdin.close()
            assert process.stdout is not None
            output, _ = await asyncio.wait_for(asyncio.gather(read_capped(process.stdout), process.wait()), timeout)
        except (TimeoutError, NodeAgentError, OSError) as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return ExecResult(exit_code=-1, output=str(exc) or "timed out")
        return ExecResult(exit_code=process.returncode or 0, output=message(output))

    def exec_command(self, running: RunningContainer, command: Sequence[str], *, tty: bool) -> ExecCommand:
        """As exec(): nsenter into its mount and network namespaces, setpriv to its user and capabilities,
        moved into its cgroup before it runs."""
        assert isinstance(running, MonitoredContainer)
        path = running.spec.cgroup.path

        async def into_cgroup(pid: int) -> None:
            await self.cgroups.attach(path, pid)

        return ExecCommand(tuple(self._enter_argv(running, command)), None, into_cgroup)

    def _enter_argv(self, running: MonitoredContainer, command: Sequence[str]) -> list[str]:
        """Into its namespaces and working directory, then its exact environment, user and capabilities."""
        return [host_tool("nsenter"), "--target", str(running.pid), "--mount", "--net", "--wd", "--",
                *exact_env(container_env(running.spec)),
                *setpriv_argv(running.spec, self.capabilities, host_tool("setpriv")), *command]

    def _set_oom_score_adj(self, pid: int, value: int | None) -> None:
        allowed = self.oom_score_adj.allowed(value)
        if allowed is None:
            return
        try:
            with open(f"/proc/{pid}/oom_score_adj", "w") as handle:
                handle.write(str(allowed))
        except PermissionError as exc:  # a kernel stricter than the capability said: the inherited value stays
            log.warning("oom_score_adj %d of pid %d: %s", allowed, pid, exc.strerror)


async def release(bundle: str) -> None:
    """Open the start FIFO for writing (once the launcher waits on it) and say go."""
    path = os.path.join(bundle, "start")
    deadline = asyncio.get_running_loop().time() + RELEASE_TIMEOUT_SECONDS
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.001)  # the launcher has not opened its end yet
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


def container_env(spec: ContainerSpec) -> dict[str, str]:
    """The container's environment: PATH and HOSTNAME as a container runtime gives them, then the pod's."""
    return {"PATH": DEFAULT_PATH, "HOSTNAME": spec.hostname, **spec.env}


def pod_files(spec: ContainerSpec) -> dict[str, str]:
    """The pod's own /etc files: {container path: content}; none for hostNetwork."""
    files = {"/etc/hosts": spec.hosts_file, "/etc/resolv.conf": spec.resolv_conf}
    return {target: text for target, text in files.items() if text is not None}


def _write_bundle(spec: ContainerSpec, bundle: str, plan: mountns.MountPlan | None,
                  script: Callable[[mountns.MountNamespace | None], str]) -> mountns.MountNamespace | None:
    """The bundle (its start FIFO, the pod's /etc files), the mount namespace made of them, the run script
    that joins it, and the log's directory: blocking. The namespace is the caller's to close."""
    os.makedirs(bundle, mode=0o700)
    os.mkfifo(os.path.join(bundle, "start"), 0o600)
    write_bundle_files(bundle, pod_files(spec))
    if plan is not None and plan.sysfs is not None:
        os.mkdir(plan.sysfs, 0o700)
    namespace = None if plan is None else mountns.make(plan)
    try:
        with open(os.path.join(bundle, "run"), "w") as handle:
            handle.write(script(namespace))
        os.makedirs(os.path.dirname(spec.log_path), exist_ok=True)
    except BaseException:
        if namespace is not None:
            namespace.close()
        raise
    return namespace


def mount_plan(spec: ContainerSpec, bundle: str) -> mountns.MountPlan | None:
    """The container's own mounts (its volumes, the pod's /etc files, its network's /sys, a read-only /); None
    when it has none and runs in the node's mount namespace."""
    binds = [mountns.Bind(m.host_path, m.container_path, m.read_only) for m in spec.mounts]
    binds += [mountns.Bind(bundle_path(bundle, target), target, False) for target in pod_files(spec)]
    if not binds and spec.netns is None and not spec.read_only_root:
        return None
    return mountns.MountPlan(tuple(binds), spec.read_only_root, netns=spec.netns,
                             sysfs=None if spec.netns is None else os.path.join(bundle, "sys"))


def resolved_command(spec: ContainerSpec, env: Mapping[str, str]) -> list[str]:
    """The command and its arguments, or RuntimeStartError for what would fail to start anyway."""
    if not spec.command:
        raise RuntimeStartError(
            "CreateContainerError",
            "the process runtime needs `command`: the image's entrypoint is not known without the image "
            f"(image {spec.image!r} is only recorded)")
    command = [*spec.command, *spec.args]
    executable = command[0] if "/" in command[0] else shutil.which(command[0], path=env.get("PATH", DEFAULT_PATH))
    if executable is None or not os.access(executable, os.X_OK):
        raise RuntimeStartError("RunContainerError", f'exec: "{command[0]}": executable file not found in $PATH')
    workdir = spec.working_dir or "/"
    if not os.path.isdir(workdir):
        raise RuntimeStartError("RunContainerError", f'chdir to cwd ("{workdir}") set in config failed: '
                                                     "no such file or directory")
    return command


def launcher_argv(spec: ContainerSpec, bundle: str, namespace: mountns.MountNamespace | None,
                  entry: Sequence[str]) -> list[str]:
    """The launcher's command line: into the prepared mount namespace and the pod's network, a wait for the
    go, to the working directory, then `entry`: the container's exact environment (exact_env), setpriv
    (nodeagent.runtime.security) to its user and capabilities, and the command."""
    prefix = []
    if namespace is not None:
        netns = [] if spec.netns is None else [f"--net={spec.netns}"]
        prefix = [host_tool("nsenter"), f"--mount={namespace.path}", *netns, "--"]
    return [*prefix, "/bin/sh", "-c", LAUNCHER, os.path.join(bundle, "run"), os.path.join(bundle, "start"),
            spec.working_dir or "/", *entry]


def run_script(argv: list[str]) -> str:
    """The bundle's `run`: exec the launcher. Every word is shell-quoted, so no manifest text is ever read as
    shell syntax."""
    return f"exec {' '.join(shlex.quote(word) for word in argv)}\n"


def exact_env(env: Mapping[str, str]) -> list[str]:
    """`env -i` with the container's environment, the last step before setpriv: a shell on the way in (the
    launcher's, exec's gate) would drop names that are no shell identifiers (Kubernetes allows any printable
    name without "=") and add PWD."""
    return [host_tool("env"), "-i", *(f"{key}={value}" for key, value in env.items())]


@functools.cache
def host_tool(name: str) -> str:
    """A program of the node that the runtime runs on a container's way in, by its path in the agent's PATH:
    never looked up in the container's (a manifest may set any PATH)."""
    return shutil.which(name) or name
