"""systemd/nodeagent.service: the directives the agent depends on, and `systemd-analyze verify` on it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "nodeagent.service"
INSTALLED_NODEAGENT = "/opt/nodeagent/venv/bin/nodeagent"


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values, in order (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.mark.parametrize(("section", "key", "value"), [
    ("Unit", "After", "network-online.target"),
    ("Unit", "Wants", "network-online.target"),
    ("Unit", "StartLimitIntervalSec", "0"),
    ("Service", "Type", "notify"),
    ("Service", "NotifyAccess", "main"),
    ("Service", "ExecStart", f"{INSTALLED_NODEAGENT} run --config /etc/nodeagent/nodeagent.yaml"),
    ("Service", "ExecReload", "/bin/kill -HUP $MAINPID"),
    ("Service", "Restart", "always"),
    ("Service", "RestartSec", "2"),
    ("Service", "KillMode", "process"),
    ("Service", "Delegate", "yes"),
    ("Service", "OOMScoreAdjust", "-999"),
    ("Service", "WatchdogSec", "30"),
    ("Service", "LimitNOFILE", "1048576"),
    ("Service", "TasksMax", "infinity"),
    ("Install", "WantedBy", "multi-user.target"),
], ids=lambda value: str(value))
def test_directive(section: str, key: str, value: str) -> None:
    assert directives(UNIT.read_text()).get(section, {}).get(key) == [value]


def test_header_explains_kill_mode_and_delegate() -> None:
    header = [line for line in UNIT.read_text().splitlines() if line.startswith("#")]
    text = " ".join(header)
    assert "KillMode=process" in text
    assert "Delegate=yes" in text
    assert "pods keep running" in text


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """Verified as shipped but for ExecStart, which points at this checkout's nodeagent: verify checks that
    the command exists, and /opt/nodeagent/venv is there only after scripts/install.sh."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package: systemd; scripts/test.sh installs it)")
    nodeagent = Path(sys.executable).parent / "nodeagent"
    if not nodeagent.is_file():
        pytest.skip(f"{nodeagent} is missing: install this checkout into the virtualenv running the tests")
    shipped = UNIT.read_text()
    assert shipped.count(INSTALLED_NODEAGENT) == 1
    copy = tmp_path / "nodeagent.service"
    copy.write_text(shipped.replace(INSTALLED_NODEAGENT, str(nodeagent)))
    result = subprocess.run([analyze, "verify", str(copy)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False)
    # verify exits 0 even for unknown keys and unparsable values, which it only prints: none may be ours
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "nodeagent.service" in line]
    assert (result.returncode, complaints) == (0, [])
