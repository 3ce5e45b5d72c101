"""Issue 16's termination fields on the cri runtime (root, containerd): termination messages through a CRI
mount, lifecycle.stopSignal, activeDeadlineSeconds; and shareProcessNamespace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.containerd import BUSYBOX_IMAGE, Containerd
from tests.integration.harness import AgentHarness, wait_for
from tests.integration.ociimage import BUSYBOX, ImageFile, layer_tar, oci_archive
from tests.integration.test_cri import agent, containerd, cri_images, pod, state

__all__ = ["agent", "containerd", "cri_images"]  # the fixtures, imported for pytest

QUITTER = "nodeagent.test/quitter:1"
TRAPS = "trap 'echo USR1 > /dev/termination-log; exit 7' USR1; while :; do sleep 0.1; done"


def ended(agent: AgentHarness, name: str) -> dict[str, Any]:
    wait_for(lambda: state(agent, name)["state"].get("terminated"), timeout=60, what=f"{name} done")
    return state(agent, name)["state"]["terminated"]  # type: ignore[no-any-return]


def test_termination_messages_through_a_cri_mount(agent: AgentHarness) -> None:
    agent.write("said.yaml", pod("said", "echo done > /dev/termination-log", extra="  restartPolicy: Never\n"))
    agent.write("logs.yaml", pod("logs", "echo from the log; exit 3", extra="  restartPolicy: Never\n",
                                 container="    terminationMessagePolicy: FallbackToLogsOnError\n"))
    assert ended(agent, "said")["message"] == "done\n"
    assert ended(agent, "logs")["message"] == "from the log\n"


def test_the_stop_signal_at_the_deadline(agent: AgentHarness) -> None:
    agent.write("usr1.yaml", pod("usr1", TRAPS, extra="  os: {name: linux}\n  activeDeadlineSeconds: 3\n",
                                 container="    lifecycle: {stopSignal: SIGUSR1}\n"))
    last = ended(agent, "usr1")
    assert (last["exitCode"], last["message"]) == (7, "USR1\n"), json.dumps(last)
    status = agent.pod("usr1")["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")


def test_share_process_namespace(agent: AgentHarness) -> None:
    """The pod's PID namespace (the sandbox's: its pause process is PID 1): one container sees the other's."""
    agent.write("shared-pid.yaml", f"""
kind: Pod
metadata: {{name: shared-pid}}
spec:
  shareProcessNamespace: true
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - {{name: first, image: {BUSYBOX_IMAGE}, command: [sh, -c, 'read -r n < /proc/1/comm; echo $n']}}
  containers:
  - name: c
    image: {BUSYBOX_IMAGE}
    command: [sh, -c, 'while [ ! -e /tmp/seen ]; do for f in /proc/[0-9]*/comm; do read -r n < $f; [ $n = sleep ] && echo seen > /tmp/seen; done; sleep 0.1; done; cat /tmp/seen']
  - {{name: other, image: {BUSYBOX_IMAGE}, command: [sleep, '3600']}}
""")
    assert ended(agent, "shared-pid")["exitCode"] == 0
    assert agent.cli("logs", "shared-pid", "-c", "first").stdout == "pause\n"
    assert agent.cli("logs", "shared-pid", "-c", "c").stdout == "seen\n"


def test_the_images_stop_signal(agent: AgentHarness, containerd: Containerd, tmp_path: Path) -> None:
    """containerd would send the image's STOPSIGNAL on StopContainer; nodeagent signals the process itself,
    so it sends the same (USR1 here, as a Dockerfile writes it) at the deadline."""
    files = [ImageFile(d) for d in ("bin", "dev", "proc", "sys")] + [ImageFile("tmp", mode=0o1777)]
    files += [ImageFile("bin/busybox", Path(BUSYBOX).read_bytes(), mode=0o755)]
    files += [ImageFile(f"bin/{applet}", link_to="/bin/busybox") for applet in ("sh", "sleep")]
    archive = oci_archive(QUITTER, layer_tar(files), entrypoint=[], cmd=["sh"], output=tmp_path / "quitter.tar",
                          stop_signal="USR1")
    containerd.ctr("images", "import", str(archive))
    agent.write("quitter.yaml", pod("quitter", TRAPS, extra="  activeDeadlineSeconds: 3\n").replace(
        BUSYBOX_IMAGE, QUITTER))
    last = ended(agent, "quitter")
    assert (last["exitCode"], last["message"]) == (7, "USR1\n"), json.dumps(last)
