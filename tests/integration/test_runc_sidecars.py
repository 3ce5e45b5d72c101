"""Sidecars on the runc runtime (root): the order of starts through a shared emptyDir, the sidecar running beside
the app in image containers, and the app stopped before its sidecar."""

from __future__ import annotations

from typing import Any

from tests.integration.harness import AgentHarness, wait_for
from tests.integration.registry import Registry, auth_registry, registry  # noqa: F401
from tests.integration.test_runc import Images, images, manifest, shared, state  # noqa: F401


def test_a_sidecar_in_image_containers_starts_first_and_stops_last(shared: AgentHarness,  # noqa: F811
                                                                   images: Images) -> None:  # noqa: F811
    mount = [{"name": "shared", "mountPath": "/shared"}]

    def container(name: str, script: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "image": images.busybox.reference, "command": ["sh", "-c", script],
                "volumeMounts": mount, **extra}

    # the proxy logs every line it sees; the app says when it starts and when it is asked to stop
    proxy = container("proxy", "echo proxy-up >> /shared/log; trap 'echo proxy-stop >> /shared/log; exit 0' TERM; "
                               "while :; do sleep 0.1; done", restartPolicy="Always")
    setup = container("setup", "echo setup >> /shared/log")
    app = container("app", "echo app-up >> /shared/log; trap 'sleep 1; echo app-stop >> /shared/log; exit 0' TERM; "
                           "while :; do sleep 0.1; done")
    shared.write("sidecar.yaml", manifest("sidecar", [app], initContainers=[proxy, setup],
                                          volumes=[{"name": "shared", "emptyDir": {}}], terminationGracePeriodSeconds=10))
    wait_for(lambda: "running" in state(shared, "sidecar", "app")["state"], timeout=60, what="the app running")
    statuses = {s["name"]: s for s in shared.pod("sidecar")["status"]["initContainerStatuses"]}
    assert "running" in statuses["proxy"]["state"] and statuses["setup"]["state"]["terminated"]["exitCode"] == 0
    proxy_cgroup = shared.cgroup_path("sidecar", "proxy")
    pid = min(wait_for(lambda: shared.procs(proxy_cgroup), what="the proxy's process"))  # its shell, not a sleep
    with open(f"/proc/{pid}/root/shared/log") as log:  # the emptyDir, opened through the proxy while it runs

        def lines() -> list[str]:
            log.seek(0)
            return log.read().split()

        assert lines() == ["proxy-up", "setup", "app-up"]
        shared.remove("sidecar.yaml")

        wait_for(lambda: "proxy-stop" in lines(), timeout=30, what="the proxy stopped")
        assert lines()[3:] == ["app-stop", "proxy-stop"]  # the app's second-long stop came first
    wait_for(lambda: not any(p["metadata"]["name"] == "sidecar" for p in shared.pods()), timeout=60,
             what="the pod gone")
