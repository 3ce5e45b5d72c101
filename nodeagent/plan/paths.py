"""Cgroup names for the kubelet's hierarchy, in the cgroupfs or the systemd driver's form.

A cgroup is named by its components (kubelet: CgroupName), then spelled for a driver:

    ["kubepods", "burstable", "pod1234-ab"]
      cgroupfs: /kubepods/burstable/pod1234-ab
      systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_ab.slice
"""

from __future__ import annotations

from nodeagent.api.resources import QOSClass
from nodeagent.plan.settings import CgroupDriverName, PlanSettings

KUBEPODS = "kubepods"
CONTAINER_UNIT_PREFIX = "nodeagent"
_QOS_COMPONENT = {QOSClass.BURSTABLE: "burstable", QOSClass.BESTEFFORT: "besteffort"}

CgroupName = tuple[str, ...]


def root_name(settings: PlanSettings) -> CgroupName:
    """The cgroupRoot's components ("/" has none)."""
    return tuple(part for part in settings.cgroup_root.split("/") if part)


def node_name(settings: PlanSettings) -> CgroupName:
    """Where pods live: <cgroupRoot>/kubepods, or the cgroupRoot itself without per-QoS cgroups."""
    root = root_name(settings)
    return (*root, KUBEPODS) if settings.cgroups_per_qos else root


def qos_name(qos: QOSClass, settings: PlanSettings) -> CgroupName:
    """Guaranteed pods sit directly under kubepods; the others in kubepods/<qos>."""
    base = node_name(settings)
    component = _QOS_COMPONENT.get(qos)
    return (*base, component) if component else base


def pod_name(uid: str, qos: QOSClass, settings: PlanSettings) -> CgroupName:
    return (*qos_name(qos, settings), f"pod{uid}")


def to_cgroupfs(name: CgroupName) -> str:
    return "/" + "/".join(name)


def to_systemd(name: CgroupName) -> str:
    """kubelet's CgroupName.ToSystemd: '-' in a component becomes '_', then the slice is expanded."""
    if not name:
        return "/"
    parts = [component.replace("-", "_") for component in name]
    return expand_slice("-".join(parts) + ".slice")


def expand_slice(slice_name: str) -> str:
    """systemd's slice expansion: 'a-b-c.slice' -> '/a.slice/a-b.slice/a-b-c.slice'."""
    stem = slice_name.removesuffix(".slice")
    if stem == "-":
        return "/"
    path = ""
    prefix = ""
    for component in stem.split("-"):
        prefix = f"{prefix}-{component}" if prefix else component
        path += f"/{prefix}.slice"
    return path


def spell(name: CgroupName, driver: CgroupDriverName) -> str:
    return to_systemd(name) if driver is CgroupDriverName.SYSTEMD else to_cgroupfs(name)


def monitor_leaf(uid: str, *, driver: CgroupDriverName) -> str:
    """Where a pod's container monitors (conmon) live below the pod cgroup: a leaf of their own, as CRI-O's
    crio-conmon-<id>, since cgroup v2 keeps processes out of a cgroup whose children use its controllers.
    No container can have its name: those are DNS labels, without "_"."""
    if driver is CgroupDriverName.SYSTEMD:
        return f"{CONTAINER_UNIT_PREFIX}-{uid.replace('-', '_')}-_conmon.scope"
    return "_conmon"


def container_leaf(uid: str, container: str, *, driver: CgroupDriverName, per_pod: bool) -> str:
    """The container's own cgroup below its parent: its name under a pod cgroup, else made unique.

    With systemd it is a transient scope, whose name must be unique on the whole machine.
    """
    if driver is CgroupDriverName.SYSTEMD:
        return f"{CONTAINER_UNIT_PREFIX}-{uid.replace('-', '_')}-{container}.scope"
    return container if per_pod else f"pod{uid}-{container}"
