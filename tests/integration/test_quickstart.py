"""The README's quick starts, run as a newcomer runs them: from a `git clone` of this repository, the commands
parsed from README.md (the ```sh blocks of each "Quick start" section), as root.

The commands are run as written, with translations that keep the machine untouched:
- `sudo` is dropped (the test is root already, and sudo would drop the environment);
- `/etc/kubernetes/manifests` is the harness's manifest directory;
- the agent's configuration is the harness's (its socket, state directory, cgroupRoot and network
  namespace), through $NODEAGENT_CONFIG, which `scripts/nodeagent.sh run` and the client commands honour;
  `--config FILE` becomes the harness's configuration with FILE's settings merged in;
- `scripts/nodeagent.sh run` runs in the background, in the harness's network namespace; it makes the
  clone's .venv first, which the test does beforehand in the machine's namespace, where pip reaches its index;
- `apt-get install` lines are checked (the packages must be installed already) instead of run;
- `watch -n1 CMD` becomes: run CMD until it shows the STATUS of the section's console block;
- `nodeagent logs POD` is run until it shows a line, as read seconds after `watch` showed Running.
The clone's commit is HEAD: commit before running these tests.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.harness import AgentHarness, wait_for
from tests.integration.test_runc import remove_everywhere

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = "/etc/kubernetes/manifests"
FIRST = "## Quick start\n"
OFFLINE = "## Quick start offline"
MiB = 1 << 20


def section(readme: str, heading: str) -> tuple[list[str], str]:
    """The commands of the section's ```sh blocks (comments dropped), and its first ```console block."""
    text = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    commands = [line.split("  #", 1)[0].strip() for block in re.findall(r"```sh\n(.*?)```", text, re.S)
                for line in block.splitlines() if line.strip()]
    return commands, re.findall(r"```console\n(.*?)```", text, re.S)[0]


def shown(console: str, column: str) -> str:
    header, row = console.splitlines()[:2]
    return row.split()[header.split().index(column)]


class QuickStart:
    """A clone of the repository and the harness its commands are translated onto."""

    def __init__(self, harness: AgentHarness, root: Path) -> None:
        if shutil.which("git") is None:
            pytest.skip("needs git, to clone the repository as a newcomer does")
        self.harness = harness
        self.clone = root / "clone"
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(self.clone)], check=True, timeout=60)
        self.env = {**os.environ, "NODEAGENT_CONFIG": str(harness.config_path)}
        self.env.pop("VIRTUAL_ENV", None)
        subprocess.run(["scripts/venv.sh"], cwd=self.clone, env=self.env, check=True, capture_output=True, timeout=300)
        self.outputs: dict[str, str] = {}

    def run(self, heading: str) -> dict[str, str]:
        """Every command of the section, in order; each one's output by its translated command line."""
        commands, console = section((self.clone / "README.md").read_text(), heading)
        status = shown(console, "STATUS")
        for command in commands:
            command = self.translated(command)
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                missing = [package for package in words[2:] if not package.startswith("-") and not _installed(package)]
                if missing:
                    pytest.skip(f"the README installs {' '.join(missing)} with apt-get; install it to run this test")
            elif words[0] == "scripts/test.sh":
                continue  # the suite this test belongs to
            elif words[:2] == ["scripts/nodeagent.sh", "run"]:
                self.start(command)
            elif words[0] == "watch":
                watched = shlex.join(words[2:] if words[1].startswith("-n") else words[1:])
                self.outputs[watched] = wait_for(functools.partial(self._shows, watched, status), timeout=90,
                                                 interval=1, what=f"{watched!r} to show {status}")
            elif words[1:2] == ["logs"]:
                # read after watch is stopped, seconds after Running shows: the container's first line can
                # come later than that (its cpu limit, a loaded machine)
                self.outputs[command] = wait_for(functools.partial(self._run, command), timeout=30, interval=0.5,
                                                 what=f"{command!r} to show a line")
            else:
                self.outputs[command] = self._run(command)
        return self.outputs

    def translated(self, command: str) -> str:
        command = command.removeprefix("sudo ").replace(" sudo ", " ").replace(MANIFESTS, str(self.harness.manifests))
        if (found := re.search(r"--config (\S+)", command)) is not None:
            settings = yaml.safe_load((self.clone / found.group(1)).read_text())
            self.harness.configure({key: value for key, value in settings.items() if key not in ("apiVersion", "kind")})
            command = command.replace(found.group(0), f"--config {self.harness.config_path}")
        return command

    def start(self, command: str) -> None:
        """The agent's command, in the background in the node's network namespace; the harness stops it."""
        assert self.harness.node is not None
        with open(self.harness.log_path, "ab") as log:
            self.harness.process = subprocess.Popen(
                ["nsenter", f"--net={self.harness.node.path}", "--", "bash", "-c", command], cwd=self.clone,
                env=self.env, stdout=log, stderr=log)
        wait_for(lambda: self.harness._still_running() and self.harness.socket.exists()
                 and self.harness.client.get("/api/v1/pods"), what=f"the agent started by {command!r}", timeout=60,
                 interval=0.5)

    def output(self, ending: str) -> str:
        return self.outputs[next(command for command in self.outputs if command.endswith(ending))]

    def _run(self, command: str) -> str:
        done = subprocess.run(["bash", "-c", command], cwd=self.clone, env=self.env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, f"{command}: exit {done.returncode}: {done.stderr}"
        return done.stdout

    def _shows(self, command: str, status: str) -> str | None:
        output = self._run(command)
        return output if status in output else None


def _installed(package: str) -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True, check=False)
    return done.stdout.strip() == "install ok installed"


@pytest.fixture
def quick_start(harness: AgentHarness, tmp_path: Path) -> Iterator[QuickStart]:
    try:
        yield QuickStart(harness, tmp_path)
    finally:
        harness.clean_up()
        remove_everywhere(harness.cgroup_root)  # runc makes the containers' parents in every hierarchy


def test_readme_commands_are_parsed() -> None:
    readme = (REPO / "README.md").read_text()
    commands, console = section(readme, FIRST)
    assert commands[:2] == ["sudo scripts/nodeagent.sh run", "sudo scripts/test.sh"]  # the two commands
    assert commands[-1].startswith("sudo rm ")
    assert shown(console, "STATUS") == "CrashLoopBackOff"
    commands, console = section(readme, OFFLINE)
    assert "sudo scripts/nodeagent.sh images load busybox.tar" in commands
    assert shown(console, "STATUS") == "Running"


def test_quick_start_from_a_clone(quick_start: QuickStart) -> None:
    """memory-demo-2 on the default runtime: OOMKilled, exit 137, CrashLoopBackOff, the limit in the kernel."""
    harness = quick_start.harness
    outputs = quick_start.run(FIRST)
    table = quick_start.output("get pods")
    assert re.search(r"memory-demo-2-\S+\s+0/1\s+CrashLoopBackOff\s", table), table
    described = next(output for command, output in outputs.items() if " describe pod memory-demo-2" in f" {command}")
    assert "OOMKilled" in described and re.search(r"Exit Code:\s+137", described), described
    assert re.search(rf"memory\.(limit_in_bytes|max): {100 * MiB} \(in the kernel\)", described), described
    assert "OOMKilling" in described and "BackOff" in described, described
    pod_cgroups = re.findall(r"Cgroup:\s+(/\S+)", described)
    # the last command removed the file: the pod stops and its cgroups go
    wait_for(lambda: not harness.pods(), what="the pod to stop once its file is removed", timeout=30)
    assert pod_cgroups and not any(harness.cgroups.exists(path) for path in pod_cgroups)


def test_offline_quick_start_from_a_clone(quick_start: QuickStart) -> None:
    """An image built from busybox-static, loaded from a file, run by runc with imagePullPolicy Never."""
    harness = quick_start.harness
    quick_start.run(OFFLINE)
    assert re.search(r"hello-busybox-\S+\s+1/1\s+Running\s", quick_start.output("get pods"))
    assert re.fullmatch(r"hello from BusyBox v[\d.]+, loaded without a registry\n",
                        quick_start.output("logs hello-busybox")), quick_start.output("logs hello-busybox")
    wait_for(lambda: not harness.pods(), what="the pod to stop once its file is removed", timeout=30)
