"""Which cgroup hierarchy this machine has: v2 (unified), v1, or v1 with a cgroup2 mount beside (hybrid).

Read from /proc/self/mountinfo, so a test can hand in another mount table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MOUNTINFO = "/proc/self/mountinfo"
CGROUP_MOUNT = "/sys/fs/cgroup"


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    version: int  # 2 when /sys/fs/cgroup itself is cgroup2, else 1
    hybrid: bool  # v1 controllers and a cgroup2 mount (usually /sys/fs/cgroup/unified)
    v1_mounts: dict[str, str] = field(default_factory=dict)  # controller -> mount point
    v2_mount: str | None = None
    mounts: tuple[str, ...] = ()  # every cgroup and cgroup2 mount point (name=systemd included)

    @property
    def name(self) -> str:
        return "v2" if self.version == 2 else ("v1 (hybrid)" if self.hybrid else "v1")


def detect_layout(mountinfo: str | None = None) -> CgroupLayout:
    text = mountinfo if mountinfo is not None else Path(MOUNTINFO).read_text()
    v1: dict[str, str] = {}
    v2: str | None = None
    mounts: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        mount_point = fields[4]
        fstype = fields[separator + 1]
        super_options = fields[separator + 3].split(",") if len(fields) > separator + 3 else []
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(mount_point)
        if fstype == "cgroup2":
            if v2 is None or mount_point == CGROUP_MOUNT:
                v2 = mount_point
        elif fstype == "cgroup":
            for option in super_options:
                if option not in ("rw", "ro") and not option.startswith(("release_agent=", "name=")):
                    v1.setdefault(option, mount_point)
    version = 2 if v2 == CGROUP_MOUNT else 1
    return CgroupLayout(version=version, hybrid=version == 1 and v2 is not None, v1_mounts=v1, v2_mount=v2,
                        mounts=tuple(mounts))


def systemd_is_init() -> bool:
    """sd_booted(): systemd is PID 1 when /run/systemd/system exists."""
    return Path("/run/systemd/system").is_dir()


def choose_driver(configured: str | None) -> tuple[str, str]:
    """(driver, why): the configured cgroupDriver, else systemd when systemd is init, else cgroupfs."""
    if configured:
        return configured, "set by cgroupDriver in the configuration"
    if systemd_is_init():
        return "systemd", "cgroupDriver is unset and systemd is PID 1"
    return "cgroupfs", "cgroupDriver is unset and systemd is not PID 1"
