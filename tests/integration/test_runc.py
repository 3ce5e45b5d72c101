"""The runc runtime end to end: a real agent (`nodeagent.runtime: runc`) in its own "node" network namespace,
real runc and conmon, real cgroups, images built from busybox-static (and Debian's `stress`) pushed to real
registries on loopback and served into the node's namespace at the same address.

Most tests share one agent (module scope) and tell their pods apart by name; those that restart the agent
or change its runtime have their own.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from nodeagent.cgroups.detect import detect_layout
from tests.conftest import EXAMPLES
from tests.integration.harness import NODE, AgentHarness, wait_for
from tests.integration.images import (
    Entry,
    Layer,
    Pushed,
    busybox_layer,
    gzip_layer,
    host_binary_layer,
    image_config,
    push_image,
)
from tests.integration.netns_fixtures import in_netns
from tests.integration.registry import Registry, auth_registry, registry, serve_in_netns  # noqa: F401

RUNC_ID = re.compile(r"^runc://[0-9a-f]{64}$")


@dataclass(frozen=True)
class Images:
    busybox: Pushed  # CMD ["sh"]
    stress: Pushed  # busybox + Debian's /usr/bin/stress with its libraries
    entry: Pushed  # ENTRYPOINT ["echo", "entrypoint"], CMD ["from-cmd"]
    private: Pushed  # busybox, on the registry that wants a password


@pytest.fixture(scope="module")
def images(registry: Registry, auth_registry: Registry) -> Images:  # noqa: F811
    busybox = busybox_layer()
    stress = host_binary_layer("/usr/bin/stress")
    return Images(
        busybox=push_image(registry, "runc/busybox", "1.0", [busybox]),
        stress=push_image(registry, "runc/stress", "1.0", [busybox, stress],
                          config=image_config([busybox, stress], env=["PATH=/usr/bin:/bin"])),
        entry=push_image(registry, "runc/entry", "1.0", [busybox],
                         config=image_config([busybox], entrypoint=["echo", "entrypoint"], cmd=["from-cmd"])),
        private=push_image(auth_registry, "runc/private", "1.0", [busybox]),
    )


def regcred(path: Path, registry: Registry | None) -> None:  # noqa: F811
    """A docker config.json as the Kubernetes docs' regcred Secret holds it (none: no credentials)."""
    auths = {}
    if registry is not None:
        token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
        auths[registry.host] = {"auth": token}
    path.write_text(json.dumps({"auths": auths}))


class RuncAgent:
    """An agent with the runc runtime, and the registries served into its node's network namespace."""

    def __init__(self, root: Path, registries: list[Registry], *, host_network: bool = False,
                 **nodeagent: Any) -> None:
        self.harness = AgentHarness(root)
        self.auth_file = root / "regcred.json"
        self.mirrors: list[Registry] = []
        regcred(self.auth_file, None)
        self.harness.configure({"nodeagent": {
            "runtime": "runc", "insecureRegistries": [r.host for r in registries],
            "registryAuthFile": str(self.auth_file), **nodeagent}})
        try:
            if host_network:
                self.harness.use_host_network()  # the registries are reachable as they are
                return
            assert self.harness.node is not None
            for index, served in enumerate(registries):
                self.mirrors.append(serve_in_netns(served, self.harness.node.path, root / f"mirror{index}"))
        except BaseException:
            self.clean_up()
            raise

    def clean_up(self) -> None:
        harness = self.harness
        try:
            harness.clean_up()
        finally:
            for mirror in self.mirrors:
                mirror.stop()
            remove_everywhere(harness.cgroup_root)


def remove_everywhere(cgroup_root: str) -> None:
    """The test's cgroup root in every hierarchy (runc makes the containers' parents in all of them)."""
    for mount in detect_layout().mounts:
        top = Path(mount) / cgroup_root.lstrip("/")
        for current, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            with contextlib.suppress(OSError):  # a cgroup with processes stays (not the test's to kill)
                os.rmdir(current)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, registry: Registry,  # noqa: F811
           auth_registry: Registry, images: Images) -> Iterator[AgentHarness]:  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups, mounts and containers")
    agent = RuncAgent(tmp_path_factory.mktemp("runc-agent"), [registry, auth_registry])
    try:
        agent.harness.start()
        yield agent.harness
    finally:
        if os.environ.get("NODEAGENT_TEST_LOG"):
            print(agent.harness.agent_log())
        agent.clean_up()


def manifest(name: str, containers: list[dict[str, Any]], **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": {"terminationGracePeriodSeconds": 2, **spec, "containers": containers}})


def example(name: str, image: str) -> str:
    """A manifest of the Kubernetes docs' examples, its image replaced."""
    document = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    for container in document["spec"].get("initContainers", []) + document["spec"]["containers"]:
        container["image"] = image
    return yaml.safe_dump(document)


def state(agent: AgentHarness, pod: str, container: str, namespace: str = "default") -> dict[str, Any]:
    return agent.container_status(pod, container, namespace)


def events_of(agent: AgentHarness, pod: str) -> list[dict[str, Any]]:
    return [e for e in agent.events() if e["involvedObject"].get("name") == f"{pod}-{NODE}"]


def runc_list(agent: AgentHarness) -> list[str]:
    listed = subprocess.run(["runc", "--root", str(agent.state / "runc"), "list", "-q"], capture_output=True,
                            text=True, check=True)
    return listed.stdout.split()


def runc_state(agent: AgentHarness, container_id: str) -> dict[str, Any]:
    shown = subprocess.run(["runc", "--root", str(agent.state / "runc"), "state", container_id], capture_output=True,
                           text=True, check=True)
    return cast(dict[str, Any], json.loads(shown.stdout))


# -- memory: the Kubernetes docs' examples ----------------------------------------------------------------

def test_memory_demo_2_is_oom_killed_with_137_then_crash_loops(shared: AgentHarness, images: Images) -> None:
    shared.write("memory-demo-2.yaml", example("memory-demo-2", images.stress.reference))

    def crash_looping() -> dict[str, Any] | None:
        status = state(shared, "memory-demo-2", "memory-demo-2-ctr", "mem-example")
        waiting = status["state"].get("waiting", {})
        return status if waiting.get("reason") == "CrashLoopBackOff" else None

    status = wait_for(crash_looping, timeout=30, what="CrashLoopBackOff")
    last = status["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    assert status["restartCount"] >= 1 and RUNC_ID.match(last["containerID"])
    pod = shared.pod("memory-demo-2", "mem-example")
    reasons = [e["reason"] for e in shared.events()
               if e["involvedObject"].get("name") == pod["metadata"]["name"]]
    assert "OOMKilling" in reasons and "BackOff" in reasons
    described = shared.cli("describe", "pod", "mem-example/memory-demo-2").stdout
    assert "Reason:        OOMKilled" in described or "OOMKilled" in described
    assert "Exit Code:" in described and "137" in described


def test_memory_demo_runs_under_its_limit_and_shows_its_ids(shared: AgentHarness, images: Images) -> None:
    shared.write("memory-demo.yaml", example("memory-demo", images.stress.reference))

    def running() -> dict[str, Any] | None:
        status = state(shared, "memory-demo", "memory-demo-ctr", "mem-example")
        return status if "running" in status["state"] else None

    status = wait_for(running, timeout=20, what="memory-demo running")
    path = shared.cgroup_path("memory-demo", "memory-demo-ctr", "mem-example")
    assert shared.kernel(path, "memory.limit_in_bytes") == str(200 * 2**20)
    pids = wait_for(lambda: len(shared.procs(path)) >= 2 and shared.procs(path), what="stress and its worker")
    for pid in pids:  # runc put them there, before their first instruction
        memory = next(line for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if ":memory:" in line)
        assert memory.endswith(f":{path}")
    container_id = status["containerID"]
    assert RUNC_ID.match(container_id) and container_id.removeprefix("runc://") in runc_list(shared)
    # started by the agent reading runc's exec FIFO itself: runc sees the container as `runc start` leaves it
    assert runc_state(shared, container_id.removeprefix("runc://"))["status"] == "running"
    assert status["imageID"] == f"{images.stress.registry}/runc/stress@{images.stress.digest}"
    ip = shared.pod("memory-demo", "mem-example")["status"]["podIP"]
    assert ip.startswith("10.88.")
    wide = shared.cli("get", "pods", "-o", "wide", "-n", "mem-example").stdout
    row = next(line.split() for line in wide.splitlines() if line.startswith(f"memory-demo-{NODE}"))
    assert row[1:3] == ["1/1", "Running"] and ip in row
    described = shared.cli("describe", "pod", "mem-example/memory-demo").stdout
    assert f"Container ID:  {container_id}" in described
    assert f"Image:         {images.stress.reference}" in described
    assert f"Image ID:      {status['imageID']}" in described


def init_demo(images: Images) -> str:
    """The docs' init-demo: the init container fills the emptyDir (here from inside the pod, without the
    internet), the app container serves it (busybox httpd for nginx)."""
    document = yaml.safe_load(example("init-demo", images.busybox.reference))
    init, app = document["spec"]["initContainers"][0], document["spec"]["containers"][0]
    work, html = init["volumeMounts"][0]["mountPath"], app["volumeMounts"][0]["mountPath"]
    init["command"] = ["sh", "-c", f'echo "written by $(hostname)" > {work}/index.html && cat /etc/hosts >> {work}/index.html']
    app["command"] = ["httpd", "-f", "-p", "80", "-h", html]
    document["spec"]["terminationGracePeriodSeconds"] = 2
    return yaml.safe_dump(document)


def test_an_init_container_fills_an_empty_dir_the_app_serves_on_the_pod_network(shared: AgentHarness,
                                                                                images: Images) -> None:
    shared.write("init-demo.yaml", init_demo(images))
    wait_for(lambda: "running" in state(shared, "init-demo", "nginx")["state"], timeout=20, what="the app")
    init = state(shared, "init-demo", "install")["state"]["terminated"]
    assert (init["reason"], init["exitCode"]) == ("Completed", 0) and RUNC_ID.match(init["containerID"])
    ip = shared.pod("init-demo")["status"]["podIP"]
    assert shared.node is not None
    page = wait_for(lambda: in_netns(shared.node.path, "busybox", "wget", "-qO-", f"http://{ip}/",  # type: ignore[union-attr]
                                     check=False).stdout, what="the page, from the node")
    assert page.startswith(f"written by init-demo-{NODE}\n")  # the static pod's name is its host name
    assert f"{ip}\tinit-demo-{NODE}\n" in page  # the pod's own /etc/hosts
    shared.write("init-client.yaml", manifest("init-client", [
        {"name": "c", "image": images.busybox.reference, "command": ["wget", "-qO-", f"http://{ip}/"]}],
        restartPolicy="Never"))
    ended = wait_for(lambda: state(shared, "init-client", "c")["state"].get("terminated"), what="the client pod")
    assert ended["exitCode"] == 0, shared.cli("logs", "init-client").stdout
    assert shared.cli("logs", "init-client").stdout.startswith(f"written by init-demo-{NODE}\n")


# The Kubernetes docs' table: the image has ENTRYPOINT ["echo", "entrypoint"] and CMD ["from-cmd"].
@pytest.mark.parametrize(
    ("command", "args", "printed"),
    [(None, None, "entrypoint from-cmd"),
     (["echo", "command"], None, "command"),
     (None, ["arg"], "entrypoint arg"),
     (["echo", "command"], ["arg"], "command arg")],
    ids=["image-entrypoint-and-cmd", "command-replaces-both", "args-replace-cmd", "command-and-args"],
)
def test_command_and_args_over_the_image_entrypoint_and_cmd(shared: AgentHarness, images: Images,
                                                            command: list[str] | None, args: list[str] | None,
                                                            printed: str) -> None:
    name = f"override-{'command' if command else 'none'}-{'args' if args else 'none'}"
    container: dict[str, Any] = {"name": "c", "image": images.entry.reference}
    if command:
        container["command"] = command
    if args:
        container["args"] = args
    shared.write(f"{name}.yaml", manifest(name, [container], restartPolicy="Never"))
    ended = wait_for(lambda: state(shared, name, "c")["state"].get("terminated"), what=f"{name} done")
    assert (ended["reason"], ended["exitCode"]) == ("Completed", 0)
    assert shared.cli("logs", name).stdout == f"{printed}\n"


def test_a_missing_tag_is_err_image_pull_then_image_pull_back_off(shared: AgentHarness, images: Images) -> None:
    image = images.busybox.reference.replace(":1.0", ":missing")
    shared.write("missing.yaml", manifest("missing", [{"name": "c", "image": image}]))
    seen: list[str] = []

    def backing_off() -> bool:
        waiting = state(shared, "missing", "c")["state"].get("waiting", {})
        if waiting.get("reason") and waiting["reason"] not in seen:
            seen.append(waiting["reason"])
        return bool(waiting.get("reason") == "ImagePullBackOff")

    wait_for(backing_off, interval=0.02, what="ImagePullBackOff")
    assert seen[-2:] == ["ErrImagePull", "ImagePullBackOff"]
    failed = [e["message"] for e in events_of(shared, "missing") if e["reason"] == "Failed"]
    pulled = next(m for m in failed if m.startswith(f'Failed to pull image "{image}": '))
    assert "manifest unknown" in pulled  # the registry's own words
    described = shared.cli("describe", "pod", "missing").stdout
    assert "ImagePullBackOff" in described and "manifest unknown" in described
    assert "runc://" not in json.dumps(shared.pod("missing")["status"])  # nothing was created


def test_a_command_the_image_lacks_is_a_run_container_error(shared: AgentHarness, images: Images) -> None:
    shared.write("nope.yaml", manifest("nope", [{"name": "c", "image": images.busybox.reference,
                                                 "command": ["no-such-command"]}]))
    waiting = wait_for(lambda: state(shared, "nope", "c")["state"].get("waiting", {}).get("message") and
                       state(shared, "nope", "c")["state"]["waiting"], what="the start refused")
    assert waiting["reason"] == "RunContainerError"
    assert 'exec: "no-such-command": executable file not found in $PATH' in waiting["message"]
    configs = [path.read_text() for path in (shared.state / "containers").glob("*/config.json")]
    assert not any("no-such-command" in config for config in configs)  # the failed attempts left nothing
    shared.remove("nope.yaml")


def test_a_registry_with_htpasswd_through_registry_auth_file(shared: AgentHarness, images: Images,
                                                            auth_registry: Registry) -> None:  # noqa: F811
    auth_file = Path(yaml.safe_load(shared.config_path.read_text())["nodeagent"]["registryAuthFile"])
    regcred(auth_file, None)
    command = {"name": "c", "image": images.private.reference, "command": ["echo", "private"]}
    shared.write("private-denied.yaml", manifest("private-denied", [command], restartPolicy="Never"))
    wait_for(lambda: state(shared, "private-denied", "c")["state"].get("waiting", {}).get("reason")
             in ("ErrImagePull", "ImagePullBackOff"), what="refused without credentials")
    refused = next(e["message"] for e in events_of(shared, "private-denied")
                   if e["message"].startswith("Failed to pull image"))
    assert "401" in refused or "unauthorized" in refused.lower()
    regcred(auth_file, auth_registry)  # read at every pull: no restart needed
    shared.write("private-allowed.yaml", manifest("private-allowed", [command], restartPolicy="Never"))
    ended = wait_for(lambda: state(shared, "private-allowed", "c")["state"].get("terminated"), what="pulled")
    assert ended["exitCode"] == 0 and shared.cli("logs", "private-allowed").stdout == "private\n"


def test_exec_hooks_and_probes_run_inside_the_container(shared: AgentHarness, images: Images) -> None:
    shared.write("probed.yaml", manifest("probed", [{
        "name": "c", "image": images.busybox.reference, "command": ["sleep", "3600"],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo $HOSTNAME > /tmp/ready"]}}},
        "readinessProbe": {"exec": {"command": ["grep", "-qx", f"probed-{NODE}", "/tmp/ready"]}, "periodSeconds": 1},
    }, {
        "name": "slow", "image": images.busybox.reference, "command": ["sleep", "3600"],
        "readinessProbe": {"exec": {"command": ["sleep", "30"]}, "timeoutSeconds": 1, "periodSeconds": 1},
    }]))
    wait_for(lambda: state(shared, "probed", "c")["ready"], timeout=20, what="ready through the hook's file")
    wait_for(lambda: any("Readiness probe failed" in e["message"] for e in events_of(shared, "probed")),
             timeout=20, what="the slow probe timing out")
    slow = shared.cgroup_path("probed", "slow")
    time.sleep(0.3)
    names = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] for pid in shared.procs(slow)]
    assert [b"sleep", b"30"] not in names  # the timed-out command was killed, not left behind
    assert not state(shared, "probed", "slow")["ready"]


def pod_dirs_everywhere(pod_path: str) -> list[str]:
    return [mount for mount in detect_layout().mounts if (Path(mount) / pod_path.lstrip("/")).is_dir()]


def test_pod_cgroups_runc_made_in_other_hierarchies_go_with_the_pod(shared: AgentHarness, images: Images) -> None:
    sleeper = [{"name": "c", "image": images.busybox.reference, "command": ["sleep", "3600"]}]
    shared.write("gone.yaml", manifest("gone", sleeper))
    wait_for(lambda: "running" in state(shared, "gone", "c")["state"], what="running")
    gone = shared.cgroup_path("gone")
    assert "/sys/fs/cgroup/cpuset" in pod_dirs_everywhere(gone)  # runc made it there too
    shared.remove("gone.yaml")
    wait_for(lambda: not shared.cgroups.exists(gone), what="the pod removed")
    assert pod_dirs_everywhere(gone) == []  # removed with the pod, in every hierarchy


def list_images(agent: AgentHarness) -> str:
    """`nodeagent images` of the agent's configuration (the store is read directly: no socket)."""
    return subprocess.run([sys.executable, "-m", "nodeagent", "images", "--config", str(agent.config_path)],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def test_images_and_prune_while_the_agent_runs(shared: AgentHarness, images: Images,
                                               registry: Registry) -> None:  # noqa: F811
    def unique() -> Layer:  # so that no other image shares the digest
        return gzip_layer([Entry("marker", data=secrets.token_bytes(64))])

    done = push_image(registry, "runc/kept-done", "1.0", [busybox_layer(), unique()])
    once = push_image(registry, "runc/used-once", "1.0", [busybox_layer(), unique()])
    shared.write("sleeping.yaml", manifest("sleeping", [
        {"name": "c", "image": images.busybox.reference, "command": ["sleep", "3600"]}]))
    for name, pushed in (("kept-done", done), ("used-once", once)):
        shared.write(f"{name}.yaml", manifest(name, [{"name": "c", "image": pushed.reference,
                                                      "command": ["true"]}], restartPolicy="Never"))
    def terminated(name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = state(shared, name, "c")["state"].get("terminated")
        return found

    for name in ("kept-done", "used-once"):
        wait_for(functools.partial(terminated, name), what=f"{name} done")
    wait_for(lambda: "running" in state(shared, "sleeping", "c")["state"], what="sleeping")
    shared.remove("used-once.yaml")
    wait_for(lambda: all(p["metadata"]["name"] != f"used-once-{NODE}" for p in shared.pods()), what="gone")
    listed = list_images(shared)
    assert f"{registry.host}/runc/used-once" in listed and f"{registry.host}/runc/busybox" in listed
    pruned = shared.cli("images", "prune", "--config", str(shared.config_path)).stdout  # and the agent's --socket
    assert f"Deleted: {once.reference}" in pruned.splitlines()
    after = list_images(shared)
    assert f"{registry.host}/runc/used-once" not in after
    assert f"{registry.host}/runc/busybox" in after  # leased by the running container
    assert f"{registry.host}/runc/kept-done" in after  # its exited container is still the pod's
    assert "(no agent answered" not in pruned


# -- agent restarts ----------------------------------------------------------------------------------------

@pytest.fixture
def own_agent(tmp_path: Path, registry: Registry) -> Iterator[RuncAgent]:  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent creates cgroups, mounts and containers")
    agent = RuncAgent(tmp_path, [registry])
    try:
        yield agent
    finally:
        if os.environ.get("NODEAGENT_TEST_LOG"):
            print(agent.harness.agent_log())
        agent.clean_up()


def conmons(agent: AgentHarness) -> list[str]:
    return subprocess.run(["pgrep", "-f", f"conmon.*{agent.state}"], capture_output=True, text=True).stdout.split()


def test_agent_sigkilled_while_containers_run_and_one_exits(own_agent: RuncAgent, images: Images) -> None:
    agent = own_agent.harness
    agent.start()
    graceful = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
    agent.write("sleeper.yaml", manifest("sleeper", [
        {"name": "c", "image": images.busybox.reference, "command": ["sh", "-c", graceful]}],
        terminationGracePeriodSeconds=30))
    agent.write("brief.yaml", manifest("brief", [
        {"name": "c", "image": images.busybox.reference, "command": ["sh", "-c", "sleep 2; echo bye; exit 3"]}],
        restartPolicy="Never"))
    wait_for(lambda: all("running" in state(agent, name, "c")["state"] for name in ("sleeper", "brief")),
             timeout=20, what="both running")
    before = state(agent, "sleeper", "c")
    pids = agent.procs(agent.cgroup_path("sleeper", "c"))
    brief_cgroup = agent.cgroup_path("brief", "c")
    agent.stop(signal.SIGKILL)
    wait_for(lambda: not agent.procs(brief_cgroup), timeout=10, what="brief to exit while the agent is away")
    agent.start()
    ended = wait_for(lambda: state(agent, "brief", "c")["state"].get("terminated"), what="brief's exit")
    assert (ended["exitCode"], ended["reason"]) == (3, "Error")
    assert agent.cli("logs", "brief").stdout == "bye\n"
    now = state(agent, "sleeper", "c")
    assert now["containerID"] == before["containerID"] and now["restartCount"] == 0
    assert agent.procs(agent.cgroup_path("sleeper", "c"))[:1] == pids[:1]  # the same container, not another
    assert runc_list(agent) == [before["containerID"].removeprefix("runc://")]  # brief's deleted after adoption
    assert len(conmons(agent)) == 1
    assert len(os.listdir(agent.state / "images" / "leases")) == 1  # brief's lease released
    began = time.monotonic()
    agent.remove("sleeper.yaml")
    wait_for(lambda: not agent.pods() or all(p["metadata"]["name"] != f"sleeper-{NODE}" for p in agent.pods()),
             timeout=20, what="sleeper stopped")
    assert time.monotonic() - began < 10  # SIGTERM reached it: no 30 s grace period waited out
    assert runc_list(agent) == [] and conmons(agent) == []
    assert os.listdir(agent.state / "rootfs") == [] and os.listdir(agent.state / "images" / "leases") == []
    assert str(agent.state) not in Path("/proc/self/mounts").read_text()


def test_crun_through_runc_path(tmp_path: Path, registry: Registry, images: Images) -> None:  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access("/usr/bin/crun", os.X_OK):
        pytest.skip("needs crun (apt-get install crun)")
    agent = RuncAgent(tmp_path, [registry], host_network=True, runcPath="crun")
    try:
        agent.harness.start()
        agent.harness.write("crunned.yaml", manifest("crunned", [
            {"name": "c", "image": images.busybox.reference,
             "command": ["sh", "-c", "hostname; grep memory /proc/self/cgroup; echo crun-ok"]}], restartPolicy="Never"))
        ended = wait_for(lambda: state(agent.harness, "crunned", "c")["state"].get("terminated"), timeout=20,
                         what="done")
        logs = agent.harness.cli("logs", "crunned").stdout
        assert ended["exitCode"] == 0 and RUNC_ID.match(ended["containerID"]), logs
        hostname, memory, last = logs.splitlines()
        assert hostname == os.uname().nodename  # the node's network, so the node's UTS namespace
        assert memory.endswith(f"{agent.harness.cgroup_root}/kubepods/besteffort/pod"
                               f"{agent.harness.pod('crunned')['metadata']['uid']}/c") and last == "crun-ok"
        assert (agent.harness.state / "bin" / "nodeagent-crun").exists()  # this machine's hybrid layout
    finally:
        agent.clean_up()


# -- issue 16: seccompProfile, hostAliases ------------------------------------------------------------------

@pytest.mark.parametrize(("profile", "seccomp"), [({"type": "RuntimeDefault"}, "2"), ({"type": "Unconfined"}, "0"),
                                                  (None, "0")])
def test_seccomp_profile_filters_the_container(shared: AgentHarness, images: Images,
                                               profile: dict[str, str] | None, seccomp: str) -> None:
    """kubeadm's pods ask for RuntimeDefault: a filter (mode 2) from the node's default profile; Unconfined
    and no profile (the kubelet's default without seccompDefault) run without one."""
    name = f"seccomp-{(profile or {}).get('type', 'unset').lower()}"
    spec: dict[str, Any] = {"restartPolicy": "Never"}
    if profile is not None:
        spec["securityContext"] = {"seccompProfile": profile}
    container = {"name": "c", "image": images.busybox.reference,
                 "command": ["sh", "-c", "grep '^Seccomp:' /proc/self/status"]}
    shared.write(f"{name}.yaml", manifest(name, [container], **spec))
    wait_for(lambda: state(shared, name, "c")["state"].get("terminated"), what=f"{name} done")
    assert shared.cli("logs", name).stdout.split() == ["Seccomp:", seccomp]


def test_a_localhost_seccomp_profile_from_the_state_dir(shared: AgentHarness, images: Images) -> None:
    """`<root>/seccomp/<localhostProfile>` (the kubelet's rule, nodeagent's state dir as its root): a profile
    that refuses mkdir with EPERM; a profile that is not there is a CreateContainerConfigError."""
    profiles = shared.state / "seccomp" / "test"
    profiles.mkdir(parents=True, exist_ok=True)
    (profiles / "no-mkdir.json").write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    container = {"name": "c", "image": images.busybox.reference,
                 "command": ["sh", "-c", "mkdir /tmp/x && echo made || echo refused"],
                 "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "test/no-mkdir.json"}}}
    shared.write("seccomp-local.yaml", manifest("seccomp-local", [container], restartPolicy="Never"))
    wait_for(lambda: state(shared, "seccomp-local", "c")["state"].get("terminated"), what="seccomp-local done")
    lines = shared.cli("logs", "seccomp-local").stdout.splitlines()  # stderr and stdout: either may come first
    assert "refused" in lines and any(line.endswith("Operation not permitted") for line in lines), lines
    missing = {**container, "securityContext": {"seccompProfile": {"type": "Localhost",
                                                                   "localhostProfile": "test/missing.json"}}}
    shared.write("seccomp-missing.yaml", manifest("seccomp-missing", [missing], restartPolicy="Never"))
    wait_for(lambda: state(shared, "seccomp-missing", "c")["state"]["waiting"]["reason"]
             == "CreateContainerConfigError", what="CreateContainerConfigError")
    message = state(shared, "seccomp-missing", "c")["state"]["waiting"]["message"]
    assert "seccompProfile.localhostProfile" in message and "missing.json" in message


def test_host_aliases_in_the_containers_hosts_file(shared: AgentHarness, images: Images) -> None:
    container = {"name": "c", "image": images.busybox.reference, "command": ["tail", "-n", "2", "/etc/hosts"]}
    shared.write("aliases.yaml", manifest("aliases", [container], restartPolicy="Never", hostAliases=[
        {"ip": "127.0.0.1", "hostnames": ["kubernetes"]}]))
    wait_for(lambda: state(shared, "aliases", "c")["state"].get("terminated"), what="aliases done")
    assert shared.cli("logs", "aliases").stdout == "# Entries added by HostAliases.\n127.0.0.1\tkubernetes\n"


@pytest.mark.parametrize("host_pid", [True, False])
def test_host_pid_shares_the_nodes_pid_namespace(shared: AgentHarness, images: Images, host_pid: bool) -> None:
    name = f"hostpid-{str(host_pid).lower()}"
    container = {"name": "c", "image": images.busybox.reference, "command": ["sh", "-c", "busybox readlink /proc/self/ns/pid"]}
    shared.write(f"{name}.yaml", manifest(name, [container], restartPolicy="Never", hostPID=host_pid))
    wait_for(lambda: state(shared, name, "c")["state"].get("terminated"), what=f"{name} done")
    assert (shared.cli("logs", name).stdout.strip() == os.readlink("/proc/self/ns/pid")) is host_pid


@pytest.mark.parametrize("privileged", [True, False])
def test_a_privileged_container_gets_the_hosts_devices(shared: AgentHarness, images: Images,
                                                       privileged: bool) -> None:
    """As containerd: a privileged container sees the node's device nodes (here /dev/kmsg and the loop
    devices), an unprivileged one only runc's default set."""
    name = f"devices-{str(privileged).lower()}"
    container = {"name": "c", "image": images.busybox.reference, "securityContext": {"privileged": privileged},
                 "command": ["sh", "-c", "test -c /dev/kmsg && echo kmsg; ls /dev | grep -c '^loop[0-9]' || true"]}
    shared.write(f"{name}.yaml", manifest(name, [container], restartPolicy="Never"))
    wait_for(lambda: state(shared, name, "c")["state"].get("terminated"), what=f"{name} done")
    loops = str(len([d for d in os.listdir("/dev") if re.fullmatch(r"loop[0-9]+", d)]))
    assert shared.cli("logs", name).stdout.split() == (["kmsg", loops] if privileged else ["0"])


def test_safe_sysctls_in_the_pods_namespaces(shared: AgentHarness, images: Images) -> None:
    """net.* in the pod's network namespace, kernel.shm_rmid_forced in the container's IPC one; the node's
    values are untouched."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
        node_range = handle.read().split()
    container = {"name": "c", "image": images.busybox.reference,
                 "command": ["sh", "-c", "cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/kernel/shm_rmid_forced"]}
    shared.write("sysctls.yaml", manifest("sysctls", [container], restartPolicy="Never", securityContext={"sysctls": [
        {"name": "net.ipv4.ip_local_port_range", "value": "40000 41000"},
        {"name": "kernel/shm_rmid_forced", "value": "1"}]}))
    wait_for(lambda: state(shared, "sysctls", "c")["state"].get("terminated"), what="sysctls done")
    assert shared.cli("logs", "sysctls").stdout.split() == ["40000", "41000", "1"]
    with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
        assert handle.read().split() == node_range


def test_a_downward_api_volume_in_an_image_container(shared: AgentHarness, images: Images) -> None:
    container = {"name": "c", "image": images.busybox.reference,
                 "command": ["sh", "-c", "cat /info/name; echo; touch /info/x 2>/dev/null || echo read-only"],
                 "volumeMounts": [{"name": "info", "mountPath": "/info"}]}
    shared.write("downward.yaml", manifest("downward", [container], restartPolicy="Never", volumes=[
        {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]))
    wait_for(lambda: state(shared, "downward", "c")["state"].get("terminated"), what="downward done")
    assert shared.cli("logs", "downward").stdout == f"downward-{NODE}\nread-only\n"


def test_a_kubeadm_style_etcd_static_pod(shared: AgentHarness, images: Images, registry: Registry,  # noqa: F811
                                         tmp_path: Path) -> None:
    """Issue 16, item 4: kubeadm's etcd manifest (tests/fixtures/real/kubeadm-etcd.yaml), its addresses on the
    node's loopback and its probes as kubeadm writes them for etcd 3.4 (Debian's), on an image built from
    Debian's etcd-server binary: hostNetwork, hostPath volumes, seccomp RuntimeDefault; it becomes Ready and
    `etcdctl endpoint health` answers."""
    busybox, etcd = busybox_layer(), host_binary_layer("/usr/bin/etcd")
    image = push_image(registry, "runc/etcd", "3.4", [busybox, etcd],
                       config=image_config([busybox, etcd], env=["PATH=/usr/bin:/bin"], cmd=None))
    assert shared.node is not None
    client, peer, metrics = 23790, 23800, 23810  # the node namespace is the test's own: nothing else listens
    document = yaml.safe_load((Path(__file__).parent.parent / "fixtures" / "real" / "kubeadm-etcd.yaml").read_text())
    (container,) = document["spec"]["containers"]
    container["image"] = image.reference
    container["command"] = [
        "etcd", "--name=node", "--data-dir=/var/lib/etcd", f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}", f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}", f"--initial-cluster=node=http://127.0.0.1:{peer}",
        f"--listen-metrics-urls=http://127.0.0.1:{metrics}", "--snapshot-count=10000"]
    container["ports"] = [{"containerPort": metrics, "name": "probe-port", "protocol": "TCP"}]
    for probe in ("livenessProbe", "startupProbe"):  # kubeadm's probe for etcd < 3.5.11
        container[probe]["httpGet"]["path"] = "/health?exclude=NOSPACE&serializable=true"
    container["readinessProbe"]["httpGet"]["path"] = "/health?exclude=NOSPACE&serializable=true"
    for probe in ("livenessProbe", "startupProbe"):
        container[probe]["initialDelaySeconds"] = 1
        container[probe]["periodSeconds"] = 1
    document["metadata"]["namespace"] = "default"
    document["spec"]["volumes"] = [
        {"name": "etcd-data", "hostPath": {"path": str(tmp_path / "etcd"), "type": "DirectoryOrCreate"}},
        {"name": "etcd-certs", "hostPath": {"path": str(tmp_path / "pki"), "type": "DirectoryOrCreate"}}]
    shared.write("etcd.yaml", yaml.safe_dump(document))
    wait_for(lambda: state(shared, "etcd", "etcd")["ready"], timeout=60, what="etcd Ready")
    conditions = {c["type"]: c["status"] for c in shared.pod("etcd")["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    health = in_netns(shared.node.path, "etcdctl", f"--endpoints=http://127.0.0.1:{client}", "endpoint", "health",
                      check=False)
    assert "is healthy" in health.stdout + health.stderr, health
    assert (tmp_path / "etcd" / "member").is_dir()  # the hostPath volume holds its data
    with open(f"/proc/{shared_etcd_pid(shared)}/status") as handle:
        assert "Seccomp:\t2\n" in handle.read()


def shared_etcd_pid(agent: AgentHarness) -> int:
    listed = subprocess.run(["runc", "--root", str(agent.state / "runc"), "list", "--format", "json"],
                            capture_output=True, text=True, check=True)
    for container in json.loads(listed.stdout or "[]"):
        with open(f"/proc/{container['pid']}/cmdline", "rb") as handle:
            if handle.read().startswith(b"etcd\0"):
                return int(container["pid"])
    raise AssertionError("no etcd container is running")


def test_host_to_container_mount_propagation(shared: AgentHarness, images: Images, tmp_path: Path) -> None:
    """A mount made on the node under a hostPath after the container started reaches a HostToContainer
    volumeMount (rslave), not a default one (rprivate)."""
    source = tmp_path / "shared"
    (source / "sub").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(source), str(source)], check=True)  # the test's own mount
    try:
        subprocess.run(["mount", "--make-shared", str(source)], check=True)
        script = "for i in $(seq 100); do test -f /host/sub/flag && { echo seen; exit 0; }; sleep 0.2; done; echo unseen"
        slave = {"name": "c", "image": images.busybox.reference, "command": ["sh", "-c", script],
                 "volumeMounts": [{"name": "host", "mountPath": "/host", "mountPropagation": "HostToContainer"}]}
        private = {**slave, "name": "d", "volumeMounts": [{"name": "host", "mountPath": "/host"}]}
        shared.write("propagation.yaml", manifest("propagation", [slave, private], restartPolicy="Never",
                                                  volumes=[{"name": "host", "hostPath": {"path": str(source)}}]))
        wait_for(lambda: all("running" in state(shared, "propagation", name)["state"] for name in ("c", "d")),
                 timeout=30, what="both running")
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(source / "sub")], check=True)
        (source / "sub" / "flag").write_text("x")
        wait_for(lambda: all(state(shared, "propagation", name)["state"].get("terminated") for name in ("c", "d")),
                 timeout=40, what="both done")
        assert shared.cli("logs", "propagation", "-c", "c").stdout == "seen\n"
        assert shared.cli("logs", "propagation", "-c", "d").stdout == "unseen\n"
    finally:
        shared.remove("propagation.yaml")
        subprocess.run(["umount", "-R", str(source)], check=False)
