"""A container's securityContext as the runtimes enforce it: the kubelet's runAsNonRoot check, and the
process runtime's capabilities, no_new_privs, user and groups as a `setpriv` command line.

    verify_run_as_non_root(spec, "0")           -> RuntimeStartError(CreateContainerConfigError, ...)
    setpriv_argv(spec, available)               -> ["setpriv", "--regid=5", "--clear-groups", "--inh-caps=-all",
                                                    "--bounding-set=-all,+chown,...", "--no-new-privs", "--"]

A host process started by root (as uid 0, not setuid) gets its bounding set as its permitted and
effective capabilities when it execs, and none once setpriv has changed its uid, as runc's containers.
"""

from __future__ import annotations

from collections.abc import Collection

from nodeagent.errors import RuntimeStartError
from nodeagent.runtime.base import ContainerSpec
from nodeagent.runtime.oci_spec import ALL_CAPABILITIES, Security, capabilities

CONFIG_ERROR = "CreateContainerConfigError"


def verify_run_as_non_root(spec: ContainerSpec, image_user: str) -> None:
    """The kubelet's verifyRunAsNonRoot, against the user the container would run as without runAsUser
    (the image's USER, "uid[:gid]" or "name[:group]"; "" is root). RuntimeStartError if it may not run."""
    if not spec.run_as_non_root:
        return
    where = f'(pod: "{spec.pod_name}_{spec.pod_namespace}({spec.pod_uid})", container: {spec.name})'
    if spec.run_as_user is not None:
        if spec.run_as_user == 0:
            raise RuntimeStartError(CONFIG_ERROR, f"container's runAsUser breaks non-root policy {where}")
        return
    name = image_user.partition(":")[0]
    if not name or (name.isdigit() and int(name) == 0):
        raise RuntimeStartError(CONFIG_ERROR, f"container has runAsNonRoot and image will run as root {where}")
    if not name.isdigit():
        raise RuntimeStartError(CONFIG_ERROR, f"container has runAsNonRoot and image has non-numeric user ({name}), "
                                              f"cannot verify user is non-root {where}")


def refuse_terminal(spec: ContainerSpec, runtime: str) -> None:
    """tty: true, which only the cri runtime gives (conmon's terminal is not wired up for process and runc)."""
    if spec.tty:
        raise RuntimeStartError(CONFIG_ERROR, f"tty: true is not supported by the {runtime} runtime yet (a "
                                              "container's terminal needs the cri runtime)")


def refuse_unsupported(spec: ContainerSpec) -> None:
    """What the process runtime cannot give a host process, refused rather than run without it: mount
    propagation (each container's mounts are private), a terminal, sysctls
    (no namespaces of its own to set them in) and a seccomp profile other than Unconfined (setpriv applies
    no filter)."""
    shared = next((m for m in spec.mounts if m.propagation != "None"), None)
    if shared is not None:
        raise RuntimeStartError(CONFIG_ERROR, f"volumeMounts[].mountPropagation: {shared.propagation} (at "
                                              f"{shared.container_path}) cannot be given by the process runtime "
                                              "(its mounts are private to each container); use runc or cri")
    if spec.sysctls:
        raise RuntimeStartError(CONFIG_ERROR, "spec.securityContext.sysctls: the process runtime cannot set them "
                                              "(its containers are host processes without namespaces of their "
                                              "own for them); use the runc or cri runtime")
    refuse_terminal(spec, "process")
    if spec.seccomp_profile != "Unconfined":
        raise RuntimeStartError(CONFIG_ERROR, f"securityContext.seccompProfile: {spec.seccomp_profile} cannot be "
                                              "applied by the process runtime (host processes get no seccomp "
                                              "filter); use the runc or cri runtime, or Unconfined")


def container_capabilities(spec: ContainerSpec) -> list[str]:
    """The container's capability set (the runtime default set, securityContext.capabilities applied; all
    of them when privileged); RuntimeStartError naming a capability the kernel does not know, as runc would."""
    known = set(ALL_CAPABILITIES) | {"CAP_ALL"}
    for field, names in (("add", spec.capabilities_add), ("drop", spec.capabilities_drop)):
        for name in names:
            if _cap_name(name) not in known:
                raise RuntimeStartError(CONFIG_ERROR, f"securityContext.capabilities.{field}: unknown capability "
                                                      f"{name!r}")
    return capabilities(Security(privileged=spec.privileged, add=spec.capabilities_add, drop=spec.capabilities_drop))


def _cap_name(name: str) -> str:
    return name if name.startswith("CAP_") else f"CAP_{name.upper()}"


def setpriv_argv(spec: ContainerSpec, available: Collection[str], program: str = "setpriv") -> list[str]:
    """setpriv's options for the container's user, group, supplemental groups, capabilities (those this
    agent holds: no others can be given) and no_new_privs (allowPrivilegeEscalation: false), then `--`."""
    argv = [program]
    if spec.run_as_user is not None:
        argv.append(f"--reuid={spec.run_as_user}")
    gid = spec.run_as_group if spec.run_as_group is not None else spec.run_as_user
    if gid is not None:
        argv.append(f"--regid={gid}")
    groups = ",".join(str(group) for group in spec.supplemental_groups)
    argv.append(f"--groups={groups}" if groups else "--clear-groups")
    if not spec.privileged:
        kept = [name for name in container_capabilities(spec) if name in available]
        argv += ["--inh-caps=-all", "--bounding-set=" + ",".join(
            ["-all", *(f"+{name.removeprefix('CAP_').lower()}" for name in kept)])]
    if spec.allow_privilege_escalation is False:
        argv.append("--no-new-privs")
    return [*argv, "--"]
