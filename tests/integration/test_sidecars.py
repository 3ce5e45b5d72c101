"""Sidecars (init containers with restartPolicy: Always) as the kubelet runs them (KEP-753, GA in 1.33): started
in init order before the app containers, the next container waiting for their start and not their completion,
restarted whenever they end, counted in the pod's readiness, stopped after the app containers (in reverse order)
and when the app containers of a pod that does not restart them are done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.harness import AgentHarness, wait_for


def pod(name: str, shared: Path, init: str, containers: str, extra: str = "") -> str:
    return f"""
kind: Pod
metadata: {{name: {name}}}
spec:
{extra}  initContainers:
{init}  containers:
{containers}  volumes: [{{name: shared, hostPath: {{path: {shared}, type: DirectoryOrCreate}}}}]
"""


def container(name: str, script: str, extra: str = "") -> str:
    return (f"  - name: {name}\n    image: busybox\n    command: [sh, -c, {script!r}]\n"
            f"    volumeMounts: [{{name: shared, mountPath: /shared}}]\n{extra}")


SIDECAR = "    restartPolicy: Always\n"
# The next container starts once the sidecar runs, not once its shell has written: it gives that write up to 5 s
# (a sidecar wrongly started after it would not run before those 5 s are over, and write second).
AFTER_SIDECAR = "for i in $(seq 100); do grep -q sidecar /shared/order && break; sleep 0.05; done; "


def statuses(agent: AgentHarness, name: str) -> dict[str, dict[str, Any]]:
    status = agent.pod(name)["status"]
    return {s["name"]: s for s in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])}


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_sidecar_starts_first_runs_beside_the_app_and_counts_in_readiness(agent: AgentHarness,
                                                                             tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    agent.write("web.yaml", pod("web", shared,
                                container("logshipper", "echo sidecar >> /shared/order; exec sleep 3600", SIDECAR)
                                + container("setup", AFTER_SIDECAR + "echo setup >> /shared/order"),
                                container("app", "echo app >> /shared/order; exec sleep 3600")))
    wait_for(lambda: lines(shared / "order") == ["sidecar", "setup", "app"], what="sidecar, setup, then app")
    wait_for(lambda: agent.pod("web")["status"]["phase"] == "Running"
             and {c["type"]: c["status"] for c in agent.pod("web")["status"]["conditions"]}["Ready"] == "True",
             what="the pod running and ready")
    seen = statuses(agent, "web")
    assert "running" in seen["logshipper"]["state"] and seen["logshipper"]["started"] is True
    assert seen["setup"]["state"]["terminated"]["reason"] == "Completed"
    assert "running" in seen["app"]["state"]
    row = agent.cli("get", "pods").stdout.splitlines()[1].split()
    assert row[1:3] == ["2/2", "Running"], row  # kubectl counts sidecars in READY


def test_a_sidecar_that_ends_is_restarted_and_the_app_goes_on(agent: AgentHarness, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    agent.write("flaky.yaml", pod("flaky", shared, container("helper", "sleep 1; exit 3", SIDECAR),
                                  container("app", "exec sleep 3600")))
    wait_for(lambda: statuses(agent, "flaky")["helper"]["restartCount"] >= 1, timeout=30, what="the sidecar restarted")
    seen = statuses(agent, "flaky")
    assert seen["app"]["restartCount"] == 0 and "running" in seen["app"]["state"]
    assert seen["helper"]["lastState"]["terminated"]["exitCode"] == 3
    assert agent.pod("flaky")["status"]["phase"] == "Running"  # a sidecar's end never ends the pod


def test_sidecars_stop_when_the_app_of_a_never_restarted_pod_is_done(agent: AgentHarness, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    agent.write("job.yaml", pod("job", shared, container("proxy", "exec sleep 3600", SIDECAR),
                                container("work", "sleep 1; echo done"), "  restartPolicy: Never\n"))
    wait_for(lambda: agent.pod("job")["status"]["phase"] == "Succeeded", timeout=40, what="the pod Succeeded")
    assert statuses(agent, "job")["work"]["state"]["terminated"]["exitCode"] == 0
    # the phase follows the app containers: Succeeded can show while the proxy is still being stopped
    wait_for(lambda: "terminated" in statuses(agent, "job")["proxy"]["state"], timeout=10, what="the proxy stopped")


def test_on_removal_the_app_stops_before_its_sidecars_in_reverse_order(agent: AgentHarness, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    # the app takes a second over its TERM: stopped all at once, the sidecars would write first
    trap = ("trap 'sleep {delay}; echo {name} >> /shared/stopped; exit 0' TERM; echo {name} >> /shared/trapped; "
            "while true; do sleep 0.1; done")
    agent.write("ordered.yaml", pod(
        "ordered", shared,
        container("first", trap.format(delay=0, name="first"), SIDECAR)
        + container("second", trap.format(delay=0, name="second"), SIDECAR),
        container("app", trap.format(delay=1, name="app"))))
    # Running is said as the launcher runs, before the shell has set its trap: a TERM then would end it at once
    wait_for(lambda: sorted(lines(shared / "trapped")) == ["app", "first", "second"], what="every trap set")
    agent.remove("ordered.yaml")
    wait_for(lambda: not agent.pods(), timeout=60, what="the pod gone")
    assert lines(shared / "stopped") == ["app", "second", "first"]


def test_the_next_container_waits_for_a_sidecars_startup_probe(agent: AgentHarness, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    probe = "    startupProbe: {exec: {command: [test, -e, /shared/ready]}, periodSeconds: 1, failureThreshold: 30}\n"
    agent.write("gated.yaml", pod(
        "gated", shared,
        container("proxy", "echo proxy >> /shared/order; sleep 2; echo ready >> /shared/order; touch /shared/ready; "
                           "exec sleep 3600", SIDECAR + probe)
        + container("setup", "echo setup >> /shared/order"),
        container("app", "echo app >> /shared/order; exec sleep 3600")))
    wait_for(lambda: lines(shared / "order")[-1:] == ["app"], timeout=30, what="the app started")
    assert lines(shared / "order") == ["proxy", "ready", "setup", "app"]
