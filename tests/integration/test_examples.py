"""Every example in examples/ on the default `process` runtime, with the outcome examples/README.md gives it.

The README's table is parsed: each example file must have a row there and a check here, so an example
cannot be added without its documented and tested outcome.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import EXAMPLES
from tests.integration.harness import NODE, AgentHarness, wait_for

MiB = 1 << 20


def documented() -> dict[str, str]:
    rows = re.findall(r"^\| (\S+\.yaml) \| (.+) \|$", (EXAMPLES / "README.md").read_text(), re.M)
    return dict(rows)


def running(agent: AgentHarness, name: str, namespace: str = "default") -> dict[str, Any] | None:
    pod = agent.pod(name, namespace)
    statuses = pod["status"]["containerStatuses"]
    return pod if statuses and all("running" in s["state"] for s in statuses) else None


def limit_file(agent: AgentHarness) -> str:
    return "memory.max" if agent.cgroups.version == 2 else "memory.limit_in_bytes"


def memory_demo(agent: AgentHarness) -> None:
    pod = wait_for(lambda: running(agent, "memory-demo", "mem-example"), what="running")
    assert pod["status"]["phase"] == "Running"
    container = agent.cgroup_path("memory-demo", "memory-demo-ctr", "mem-example")
    assert agent.kernel(container, limit_file(agent)) == str(200 * MiB)
    usage = wait_for(lambda: agent.cgroups.usage(container).memory_working_set_bytes > 140 * MiB
                     and agent.cgroups.usage(container).memory_working_set_bytes, what="150M in use")
    assert 100 * MiB < usage < 200 * MiB


def memory_demo_2(agent: AgentHarness) -> None:
    def backing_off() -> dict[str, Any] | None:
        status = agent.container_status("memory-demo-2", "memory-demo-2-ctr", "mem-example")
        return status if status["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff" else None

    status = wait_for(backing_off, what="CrashLoopBackOff")
    assert status["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert status["lastState"]["terminated"]["exitCode"] == 137 and status["restartCount"] >= 1
    backoff = [e for e in agent.events() if e["reason"] == "BackOff"]
    assert backoff and backoff[0]["type"] == "Warning"
    assert backoff[0]["message"].startswith("Back-off restarting failed container memory-demo-2-ctr")


def memory_demo_3(agent: AgentHarness) -> None:
    pod = wait_for(lambda: agent.pod("memory-demo-3", "mem-example"), what="listed")
    assert (pod["status"]["phase"], pod["status"]["reason"]) == ("Pending", "OutOfmemory")
    assert "enough resource: memory" in pod["status"]["message"]


def qos(name: str, qos_class: str, containers: int = 1) -> Callable[[AgentHarness], None]:
    def check(agent: AgentHarness) -> None:
        pod = wait_for(lambda: running(agent, name, "qos-example"), what=f"{name} running")
        assert pod["status"]["qosClass"] == qos_class
        assert len(pod["status"]["containerStatuses"]) == containers
    return check


def init_demo(agent: AgentHarness) -> None:
    pod = wait_for(lambda: running(agent, "init-demo"), what="init-demo running")
    init = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    assert (init["reason"], init["exitCode"]) == ("Completed", 0)
    assert init["finishedAt"] <= pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    logs = wait_for(lambda: agent.cli("logs", "init-demo").stdout or None, what="the app's log")
    assert logs == "<h1>written by the init container</h1>\n"


def static_web(agent: AgentHarness) -> None:
    pod = wait_for(lambda: running(agent, "static-web"), what="static-web running")
    assert pod["metadata"]["name"] == f"static-web-{NODE}"
    assert pod["metadata"]["labels"]["role"] == "myrole"


def redis_emptydir(agent: AgentHarness) -> None:
    wait_for(lambda: running(agent, "redis"), what="redis running")
    assert agent.cli("logs", "redis").stdout == ""  # the volume was empty
    pid = wait_for(lambda: agent.procs(agent.cgroup_path("redis", "redis")), what="its process")[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: agent.container_status("redis", "redis")["restartCount"] == 1 and running(agent, "redis"),
             what="the restart", timeout=30)
    assert agent.cli("get", "pods").stdout.splitlines()[1].split()[:4] == [f"redis-{NODE}", "1/1", "Running", "1"]
    assert agent.cli("logs", "redis").stdout == "test-file\n"  # written by the first run, in the emptyDir


CHECKS: dict[str, Callable[[AgentHarness], None]] = {
    "memory-demo.yaml": memory_demo,
    "memory-demo-2.yaml": memory_demo_2,
    "memory-demo-3.yaml": memory_demo_3,
    "qos-guaranteed.yaml": qos("qos-demo", "Guaranteed"),
    "qos-burstable.yaml": qos("qos-demo-2", "Burstable"),
    "qos-besteffort.yaml": qos("qos-demo-3", "BestEffort"),
    "qos-two-containers.yaml": qos("qos-demo-4", "Burstable", containers=2),
    "init-demo.yaml": init_demo,
    "static-web.yaml": static_web,
    "redis-emptydir.yaml": redis_emptydir,
}


def test_every_example_has_its_documented_outcome_and_a_check() -> None:
    files = {path.name for path in EXAMPLES.glob("*.yaml")}
    assert set(documented()) == files
    assert set(CHECKS) == files


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example_on_the_default_runtime(agent: AgentHarness, name: str) -> None:
    assert name in documented()
    agent.write(name, (EXAMPLES / name).read_text())
    CHECKS[name](agent)
