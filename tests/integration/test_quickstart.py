"""The README's quick start, run as a newcomer runs it: from a `git clone` of this repository, the commands
parsed from README.md's "Quick start" section (its ```sh blocks), on the default runtime, as root.

The commands are run as written, with three translations that keep the machine untouched: `sudo` is
dropped (the test is root already, and sudo would drop the environment), `/etc/kubernetes/manifests` is
the harness's manifest directory, and the agent's configuration comes through $NODEAGENT_CONFIG (which
`scripts/nodeagent.sh run` honours) with the harness's socket, state directory, cgroupRoot and network
namespace. The agent's command makes the clone's .venv first: the test runs that step (scripts/venv.sh) in the
machine's network namespace beforehand, where pip reaches its index. `watch -n1 CMD` becomes: run CMD until it shows the STATUS of the README's console block.
The clone's commit is HEAD: commit before running this test.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import AgentHarness, wait_for

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = "/etc/kubernetes/manifests"
MiB = 1 << 20


def quick_start(readme: str) -> tuple[list[list[str]], str]:
    """The commands of each ```sh block of the Quick start section, and its first ```console block."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = [[line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]
              for block in re.findall(r"```sh\n(.*?)```", section, re.S)]
    console = re.findall(r"```console\n(.*?)```", section, re.S)
    return blocks, console[0]


def translated(command: str, harness: AgentHarness) -> str:
    command = command.removeprefix("sudo ").replace(" sudo ", " ")
    return command.replace(MANIFESTS, str(harness.manifests))


def test_readme_commands_are_parsed() -> None:
    blocks, console = quick_start((REPO / "README.md").read_text())
    assert blocks[0] == ["sudo scripts/nodeagent.sh run"]
    assert any(line.startswith("watch ") for line in blocks[1])
    assert "CrashLoopBackOff" in console


def test_quick_start_from_a_clone(harness: AgentHarness, tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("needs git, to clone the repository as a newcomer does")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=60)
    blocks, console = quick_start((clone / "README.md").read_text())
    header, row = console.splitlines()[:2]
    expected_status = row.split()[header.split().index("STATUS")]
    env = {**os.environ, "NODEAGENT_CONFIG": str(harness.config_path)}
    env.pop("VIRTUAL_ENV", None)

    (start,), *rest = blocks
    # the agent's command makes the clone's .venv first (scripts/venv.sh): done here, in the machine's network
    # namespace where pip reaches its index, so that the same command then finds it made
    subprocess.run(["scripts/venv.sh"], cwd=clone, env=env, check=True, capture_output=True, timeout=300)
    assert harness.node is not None
    with open(harness.log_path, "ab") as log:  # the harness stops it and cleans up after it
        harness.process = subprocess.Popen(["nsenter", f"--net={harness.node.path}", "--", "bash", "-c",
                                            translated(start, harness)],
                                           cwd=clone, env=env, stdout=log, stderr=log, start_new_session=True)
    wait_for(lambda: harness._still_running() and harness.socket.exists() and harness.client.get("/api/v1/pods"),
             what="the agent started by the README's command", timeout=60, interval=0.5)

    outputs: dict[str, str] = {}
    pod_cgroup = None
    for command in (translated(line, harness) for block in rest for line in block):
        if command.startswith("watch "):
            shown = shlex.split(command)[1:]
            watched = shlex.join(shown[1:] if shown[0].startswith("-n") else shown)
            outputs[watched] = wait_for(functools.partial(_shows, clone, env, watched, expected_status), timeout=60,
                                        interval=1, what=f"{watched!r} to show {expected_status}")
            pod_cgroup = harness.cgroup_path("memory-demo-2", None, "mem-example")
        else:
            outputs[command] = _run(clone, env, command)

    table = outputs[next(key for key in outputs if key.endswith("get pods"))]
    assert re.search(rf"memory-demo-2-\S+\s+0/1\s+{expected_status}\s", table), table
    described = outputs[next(key for key in outputs if " describe pod memory-demo-2" in key)]
    assert "OOMKilled" in described and re.search(r"Exit Code:\s+137", described), described
    assert re.search(rf"memory\.(limit_in_bytes|max): {100 * MiB} \(in the kernel\)", described), described
    assert "OOMKilling" in described and "BackOff" in described, described
    # the last command removed the file: the pod stops and its cgroups go
    assert pod_cgroup is not None
    wait_for(lambda: not harness.pods(), what="the pod to stop once its file is removed", timeout=30)
    assert not harness.cgroups.exists(pod_cgroup)


def _run(clone: Path, env: dict[str, str], command: str) -> str:
    done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command}: exit {done.returncode}: {done.stderr}"
    return done.stdout


def _shows(clone: Path, env: dict[str, str], command: str, status: str) -> str | None:
    output = _run(clone, env, command)
    return output if status in output else None
