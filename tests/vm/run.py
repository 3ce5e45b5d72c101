"""The VM suite: build or reuse the image, boot each configuration once, run its guest tests, report.

    .venv/bin/python tests/vm/run.py [--only v2|v1] [--timeout-scale X]

Each boot runs pytest inside the VM on its test files (tests/vm/guest), against the real agent, and
writes junit XML to the control share; this script prints every test's result, the timings, the
console tail of a VM that did not finish, and a closing 'N passed, N failed' line. Exit 0 only when
every boot finished and no test failed. What a boot left (junit, output, journal, agent logs) is kept
in <cache>/last-run/<configuration>/.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.vm import vm  # after the path: this runs as a script

CTL = "/run/nodevm/ctl"  # the control share, in the guest
GUEST_CHECKOUT = "/opt/checkout"  # the copy of the checkout's Python files on the guest's disk
GUEST_COPIED = ("nodeagent", "tests", "examples", "pyproject.toml")
GUEST_ARTIFACTS = "/var/tmp/nodeagent-vm"  # junit XML and agent logs, copied to the control share at the end


BUDGET_S = 600.0  # the whole VM part in CI, a fresh image build included
MIN_BOOT_S = 120.0  # less than this cannot boot and start an agent under TCG
STALL_RETRIES = 1  # boots again after a guest froze (seen now and then under TCG), budget permitting


@dataclass(frozen=True, slots=True)
class Configuration:
    name: str
    title: str
    tests: tuple[str, ...]
    timeout_s: float


CONFIGURATIONS = (
    # measured: v2 ~200-270 s, v1 ~115 s (boot ~20-25 s each)
    Configuration("v2", "cgroup v2 + systemd (systemd.unified_cgroup_hierarchy=1)",
                  ("tests/vm/guest/test_v2.py", "tests/vm/guest/test_runc.py"), 420),
    Configuration("v1", "cgroup v1 + systemd (systemd.unified_cgroup_hierarchy=0)",
                  ("tests/vm/guest/test_v1_systemd.py", "tests/vm/guest/test_runc.py"), 300),
)


@dataclass(frozen=True, slots=True)
class Result:
    configuration: str
    test: str
    outcome: str  # passed, failed, error, skipped
    seconds: float
    message: str


def guest_command(configuration: Configuration, timeout_s: float) -> str:
    """pytest in the guest, stopped (SIGINT: it still writes its junit XML) a minute before the VM's limit.

    The checkout's Python files are copied onto the guest's disk first and run from there: 9p is then
    used once to read them and at the end to bring the results back, never under the tests' load (boots
    froze now and then, half way through an agent's start, while agents, pytest and the logs went
    over 9p). The copy comes last on sys.path (a .pth file in the guest venv) and pytest runs from /tmp
    with --import-mode=append, so that a Python start finds the standard library and the venv first.
    A heartbeat in the control share every few seconds tells the host that the guest is alive.
    """
    root = str(vm.ROOT)
    env = {"NODEAGENT_VM_GUEST": "1", "NODEAGENT_VM_ARTIFACTS": GUEST_ARTIFACTS, "PYTHONUNBUFFERED": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    pytest = ["python", "-m", "pytest", f"--rootdir={GUEST_CHECKOUT}", "-c", f"{GUEST_CHECKOUT}/pyproject.toml",
              "--import-mode=append", "-p", "no:cacheprovider", "-o", "addopts=", "-rA", "-v", "--timeout=300",
              f"--junitxml={GUEST_ARTIFACTS}/junit.xml", "-o", "junit_family=xunit2",
              *(f"{GUEST_CHECKOUT}/{test}" for test in configuration.tests)]
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    copied = " ".join(shlex.quote(f"{root}/{name}") for name in GUEST_COPIED)
    return "\n".join([
        f"(while sleep {vm.HEARTBEAT_S:.0f}; do date +%s > {CTL}/heartbeat; done) &",
        f"mkdir -p {GUEST_CHECKOUT} {GUEST_ARTIFACTS}",
        f"cp -a {copied} {GUEST_CHECKOUT}/",
        "site=$(python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')",
        f"echo {GUEST_CHECKOUT} > \"$site/nodeagent-checkout.pth\"",
        "cd /tmp",
        f"export {exports}",
        f"timeout -s INT -k 30 {max(int(timeout_s) - 90, 60)} {shlex.join(pytest)}",
        "status=$?",
        f"cp -a {GUEST_ARTIFACTS}/. {CTL}/",
        "exit $status",
    ])


def compile_sources() -> None:
    """Bytecode for nodeagent and the tests (gitignored __pycache__), so that the guest, whose CPUs are
    emulated, never compiles them; the guest itself writes none (PYTHONDONTWRITEBYTECODE)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", "nodeagent", "tests"], cwd=vm.ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def parse_junit(configuration: str, xml: bytes) -> list[Result]:
    results = []
    for case in ET.fromstring(xml).iter("testcase"):
        if not case.get("name"):
            continue  # the test that was running when pytest was interrupted: the exit code tells
        module = case.get("classname", "").replace(".", "/") + ".py"
        name = f"{module}::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed"}.get(child.tag, child.tag)
                message = (child.get("message") or "").strip()
                if child.tag != "skipped" and child.text:
                    message = child.text.strip()
                break
        results.append(Result(configuration, name, outcome, float(case.get("time") or 0), message))
    return results


def keep(boot: vm.Boot) -> Path:
    directory = vm.cache_dir() / "last-run" / boot.name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    for name, content in boot.files.items():
        if name not in ("cmd", "env", "rc.tmp"):
            (directory / name).write_bytes(content)
    return directory


def tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=[c.name for c in CONFIGURATIONS], action="append")
    parser.add_argument("--timeout-scale", type=float, default=1.0, help="multiply each boot's time limit")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help="seconds for everything, image build included (default %(default)s)")
    options = parser.parse_args()
    began = time.monotonic()
    try:
        image = vm.ensure_image()
    except vm.VMError as exc:
        print(f"vm: FAILED to get the image: {exc}", flush=True)
        print("0 passed, 1 failed")
        return 1
    image_s = time.monotonic() - began
    origin = f"built in {image.built_s:.0f} s" if image.built_s else "from the cache"
    print(f"vm: image {image.directory} ({origin})", flush=True)
    compile_sources()
    results: list[Result] = []
    broken: list[str] = []
    timings = []
    for configuration in CONFIGURATIONS:
        if options.only and configuration.name not in options.only:
            continue
        boot = None
        for attempt in range(1 + STALL_RETRIES):
            left_s = options.budget - (time.monotonic() - began)
            timeout_s = min(configuration.timeout_s * options.timeout_scale, left_s)
            if timeout_s < MIN_BOOT_S:
                broken.append(f"{configuration.name}: not booted, {left_s:.0f} s of the {options.budget:.0f} s "
                              "budget left")
                print(f"vm: the {configuration.name} VM is not booted: the budget is spent", flush=True)
                break
            again = " again" if attempt else ""
            print(f"vm: booting{again} {configuration.title}: {' '.join(configuration.tests)}", flush=True)
            boot = vm.run_in_vm(image, configuration.name, guest_command(configuration, timeout_s),
                                timeout_s=timeout_s)
            if not boot.stalled or attempt == STALL_RETRIES:
                break
            # a frozen guest (no heartbeat) is the emulator's trouble, not a test's: its tests never ran
            print(f"vm: the {configuration.name} VM froze {boot.total_s:.0f} s after its start (no heartbeat for "
                  f"{vm.STALL_S:.0f} s); kept in {keep(boot)}\n--- the guest command's output (tail) ---\n"
                  f"{tail(boot.text('stdout'), 10)}", flush=True)
            boot = None
        if boot is None:
            continue
        kept = keep(boot)
        timings.append(f"{configuration.name}: boot {boot.boot_s or 0:.0f} s, tests {boot.command_s or 0:.0f} s, "
                       f"total {boot.total_s:.0f} s")
        junit = boot.files.get("junit.xml")
        found = parse_junit(configuration.name, junit) if junit else []
        results += found
        for result in found:
            print(f"{result.outcome.upper():8} [{configuration.name}] {result.test} ({result.seconds:.1f} s)")
            if result.outcome in ("failed", "error"):
                print("    " + tail(result.message, 40).replace("\n", "\n    "))
            elif result.outcome == "skipped":
                print(f"    {result.message}")
        if boot.rc is None or not found or boot.rc not in (0, 1):
            why = ("froze" if boot.stalled else "timed out" if boot.timed_out else "powered off without a result") \
                if boot.rc is None \
                else f"pytest exited {boot.rc}" + ("" if found else " without junit results")
            broken.append(f"{configuration.name}: {why}")
            print(f"vm: the {configuration.name} VM failed: {why}; kept in {kept}")
            print(f"--- last 50 lines of its console ---\n{boot.console_tail(50)}")
            print(f"--- the guest command's output (tail) ---\n{tail(boot.text('stdout'), 30)}\n"
                  f"{tail(boot.text('stderr'), 20)}", flush=True)
        elif boot.rc == 1:
            print(f"vm: the {configuration.name} guest's output, journal and agent logs are in {kept}", flush=True)
    counts = {outcome: sum(1 for r in results if r.outcome == outcome)
              for outcome in ("passed", "failed", "error", "skipped")}
    print(f"vm: image {image_s:.0f} s; " + "; ".join(timings) + f"; all {time.monotonic() - began:.0f} s")
    failed = counts["failed"] + counts["error"] + len(broken)
    line = f"{counts['passed']} passed, {failed} failed"
    print(line + (f", {counts['skipped']} skipped" if counts["skipped"] else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
