"""scripts/install.sh and scripts/uninstall.sh, installing into a temporary PREFIX, ETC and UNIT_DIR.

One install serves the whole module (pip takes most of a minute); the tests run in file order and
the last one purges it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install.sh"
UNINSTALL = ROOT / "scripts" / "uninstall.sh"


@dataclass(frozen=True)
class Install:
    base: Path

    @property
    def prefix(self) -> Path:
        return self.base / "opt" / "nodeagent"

    @property
    def etc(self) -> Path:
        return self.base / "etc"

    @property
    def unit_dir(self) -> Path:
        return self.base / "systemd" / "system"

    @property
    def nodeagent(self) -> Path:
        return self.prefix / "venv" / "bin" / "nodeagent"

    @property
    def config(self) -> Path:
        return self.etc / "nodeagent" / "nodeagent.yaml"

    @property
    def unit(self) -> Path:
        return self.unit_dir / "nodeagent.service"

    @property
    def manifests(self) -> Path:
        return self.etc / "kubernetes" / "manifests"

    def run(self, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PREFIX": str(self.prefix), "ETC": str(self.etc), "UNIT_DIR": str(self.unit_dir)}
        return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=110,
                              check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    if os.geteuid() != 0:
        pytest.skip("needs root: install.sh refuses to run without it")
    install = Install(tmp_path_factory.mktemp("install"))
    build_dir_before = (ROOT / "build").exists()
    result = install.run(INSTALL)
    assert result.returncode == 0, result.stderr
    assert (ROOT / "build").exists() == build_dir_before  # built from a copy: the checkout stays clean
    return install


def test_install_puts_everything_in_place(installed: Install) -> None:
    version = subprocess.run([str(installed.nodeagent), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("nodeagent, version ")
    where = subprocess.run([str(installed.prefix / "venv" / "bin" / "python"), "-c", "import nodeagent; "
                            "print(nodeagent.__file__)"], cwd="/", capture_output=True, text=True, check=True)
    assert where.stdout.startswith(f"{installed.prefix}/venv/lib/")  # installed, not an editable link to ROOT
    unit = installed.unit.read_text()
    assert f"ExecStart={installed.nodeagent} run --config {installed.config}\n" in unit
    assert unit.replace(str(installed.nodeagent), "/opt/nodeagent/venv/bin/nodeagent").replace(
        str(installed.config), "/etc/nodeagent/nodeagent.yaml") == (ROOT / "systemd" / "nodeagent.service").read_text()
    assert installed.config.read_text() == (ROOT / "config" / "nodeagent.yaml").read_text()
    manifests = installed.manifests.stat()
    assert (stat.S_IMODE(manifests.st_mode), manifests.st_uid, manifests.st_gid) == (0o755, 0, 0)


def test_installed_unit_verifies(installed: Install, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    result = subprocess.run([analyze, "verify", str(installed.unit)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_second_run_keeps_a_modified_config(installed: Install) -> None:
    mine = installed.config.read_text().replace("logLevel: INFO", "logLevel: DEBUG")
    installed.config.write_text(mine)
    result = installed.run(INSTALL)
    assert result.returncode == 0, result.stderr
    assert f"config:     {installed.config} (kept as it was)" in result.stdout
    assert installed.config.read_text() == mine
    assert subprocess.run([str(installed.nodeagent), "--version"], capture_output=True, check=False).returncode == 0


def test_uninstall_keeps_configuration_manifests_and_state(installed: Install, tmp_path: Path) -> None:
    """On a byte copy of the install (a plain uninstall never runs the venv), so the next test can purge."""
    copy = Install(tmp_path)
    for part in ("opt", "etc", "systemd"):
        shutil.copytree(installed.base / part, copy.base / part, symlinks=True)
    (copy.manifests / "web.yaml").write_text("kind: Pod\n")
    result = copy.run(UNINSTALL)
    assert result.returncode == 0, result.stderr
    assert not copy.unit.exists()
    assert not copy.prefix.exists()
    assert copy.config.read_text() == installed.config.read_text()
    assert (copy.manifests / "web.yaml").exists()
    assert "Running pods keep" in result.stdout
    again = copy.run(UNINSTALL)
    assert again.returncode == 0, again.stderr
    assert "removed" not in again.stdout


@pytest.fixture
def running_conmon(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process named conmon (a copy of sleep), as a container's monitor looks to uninstall.sh."""
    fake = tmp_path / "conmon"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    process = subprocess.Popen([str(fake), "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_purge_refuses_while_containers_run_then_removes_everything(
        installed: Install, running_conmon: subprocess.Popen[bytes]) -> None:
    state = installed.base / "state"
    config = installed.config.read_text()
    config = config.replace("staticPodPath: /etc/kubernetes/manifests", f"staticPodPath: {installed.manifests}")
    config = config.replace("stateDir: /var/lib/nodeagent", f"stateDir: {state}")
    installed.config.write_text(config)
    bundle = state / "containers" / "c1"
    bundle.mkdir(parents=True)
    (bundle / "conmon.pid").write_text(str(running_conmon.pid))

    refused = installed.run(UNINSTALL, "--purge")
    assert refused.returncode == 1
    assert "1 containers still run (c1)" in refused.stderr
    assert installed.unit.exists() and installed.nodeagent.exists() and bundle.exists()

    running_conmon.kill()
    running_conmon.wait()
    result = installed.run(UNINSTALL, "--purge")
    assert result.returncode == 0, result.stderr
    for removed in (installed.unit, installed.prefix, installed.etc / "nodeagent", installed.manifests, state):
        assert not removed.exists(), removed
    assert f"removed configuration: {installed.etc / 'nodeagent'}" in result.stdout
    assert f"removed state directory (nodeagent.stateDir): {state}" in result.stdout
