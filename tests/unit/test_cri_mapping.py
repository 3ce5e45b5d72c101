"""Pods and containers in CRI's terms: the kubelet's labels, namespaces, DNS, ports and resources."""

from dataclasses import replace

from nodeagent.network.dnsfiles import PodDNS
from nodeagent.network.model import HostPort
from nodeagent.plan.pod import CgroupPlan
from nodeagent.plan.resource_config import ResourceConfig
from nodeagent.runtime.base import ContainerSpec, Mount, PodSandboxSpec
from nodeagent.runtime.cri import api_pb2 as cri
from nodeagent.runtime.cri.mapping import container_config, container_exit, linux_resources, sandbox_config

POD = PodSandboxSpec(
    name="web-node1", namespace="default", uid="u1", hostname="web-node1",
    log_directory="/var/log/pods/default_web-node1_u1", cgroup_parent="/kubepods/burstable/podu1",
    host_network=False, dns=PodDNS(nameservers=("192.0.2.53",), searches=("example.org",), options=("ndots:2",)),
    port_mappings=(HostPort(container_port=80, host_port=8080, protocol="TCP"),),
    labels={"app": "web"}, annotations={"kubernetes.io/config.source": "file"})

CONTAINER = ContainerSpec(
    pod_name="web-node1", pod_namespace="default", pod_uid="u1", name="c", attempt=2, image="busybox:1",
    command=("sh", "-c"), args=("echo hi",), env={"A": "1"}, working_dir="/srv", run_as_user=1000,
    run_as_group=None, supplemental_groups=(5,), mounts=(Mount("/var/lib/nodeagent/pods/u1/v", "/data", True),),
    cgroup=CgroupPlan("container", "/kubepods/burstable/podu1/c", {}, "c", 968,
                      ResourceConfig(cpu_shares=512, cpu_quota_us=50000, cpu_period_us=100000,
                                     memory_bytes=104857600, memsw_bytes=104857600, swap_max_bytes=0,
                                     memory_oom_group=True)),
    oom_score_adj=968, log_path="/var/log/pods/default_web-node1_u1/c/2.log", hostname="web-node1",
    capabilities_add=("NET_ADMIN",), allow_privilege_escalation=False)


def test_a_sandbox_carries_the_kubelets_labels_and_the_pods_network() -> None:
    config = sandbox_config(POD, attempt=1)
    assert (config.metadata.name, config.metadata.namespace, config.metadata.uid, config.metadata.attempt) == (
        "web-node1", "default", "u1", 1)
    assert dict(config.labels) == {"app": "web", "io.kubernetes.pod.name": "web-node1",
                                   "io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": "u1",
                                   "app.kubernetes.io/managed-by": "nodeagent"}
    assert config.hostname == "web-node1"
    assert config.linux.cgroup_parent == "/kubepods/burstable/podu1"
    options = config.linux.security_context.namespace_options
    assert (options.network, options.pid, options.ipc) == (cri.POD, cri.CONTAINER, cri.POD)
    assert list(config.dns_config.servers) == ["192.0.2.53"] and list(config.dns_config.options) == ["ndots:2"]
    [port] = config.port_mappings
    assert (port.protocol, port.container_port, port.host_port) == (cri.TCP, 80, 8080)


def test_a_host_network_sandbox_has_the_nodes_network_and_name() -> None:
    host = sandbox_config(replace(POD, host_network=True), attempt=0)
    assert host.linux.security_context.namespace_options.network == cri.NODE
    assert host.hostname == ""


def test_share_process_namespace_gives_the_pods_pid_namespace_to_its_containers() -> None:
    """The kubelet's pidNamespaceForPod: hostPID (the node's) > shareProcessNamespace (the pod's) > per container."""
    shared = sandbox_config(replace(POD, share_process_namespace=True), attempt=0)
    assert shared.linux.security_context.namespace_options.pid == cri.POD
    container = container_config(CONTAINER, shared, cgroup_version=1)
    assert container.linux.security_context.namespace_options.pid == cri.POD


def test_a_container_gets_its_command_security_and_a_log_path_relative_to_the_pods() -> None:
    config = container_config(CONTAINER, sandbox_config(POD, 0), cgroup_version=1)
    assert (list(config.command), list(config.args), config.working_dir) == (["sh", "-c"], ["echo hi"], "/srv")
    assert (config.metadata.name, config.metadata.attempt, config.log_path) == ("c", 2, "c/2.log")
    assert config.labels["io.kubernetes.container.name"] == "c"
    assert config.annotations["io.kubernetes.container.restartCount"] == "2"
    [mount] = config.mounts
    assert (mount.host_path, mount.container_path, mount.readonly) == ("/var/lib/nodeagent/pods/u1/v", "/data", True)
    security = config.linux.security_context
    assert security.run_as_user.value == 1000 and not security.HasField("run_as_group")
    assert list(security.capabilities.add_capabilities) == ["NET_ADMIN"]
    assert security.no_new_privs and list(security.supplemental_groups) == [5]
    assert security.namespace_options.network == cri.POD


def test_resources_from_the_plan_v1_and_v2() -> None:
    v1 = linux_resources(CONTAINER.cgroup.resources, 968, cgroup_version=1)
    assert (v1.cpu_shares, v1.cpu_quota, v1.cpu_period) == (512, 50000, 100000)
    assert (v1.memory_limit_in_bytes, v1.memory_swap_limit_in_bytes, v1.oom_score_adj) == (104857600, 104857600, 968)
    assert dict(v1.unified) == {}
    v2 = linux_resources(CONTAINER.cgroup.resources, 968, cgroup_version=2)
    assert dict(v2.unified) == {"memory.swap.max": "0", "memory.oom.group": "1"}
    unlimited = linux_resources(ResourceConfig(cpu_shares=2, cpu_quota_us=-1, memory_bytes=-1), None, 1)
    assert (unlimited.cpu_quota, unlimited.memory_limit_in_bytes, unlimited.oom_score_adj) == (0, 0, 0)


def test_an_exit_as_the_runtime_reports_it() -> None:
    exited = container_exit(cri.ContainerStatus(id="c1", exit_code=137, reason="OOMKilled",
                                                started_at=1_700_000_000_000_000_000,
                                                finished_at=1_700_000_000_500_000_000), "containerd")
    assert (exited.exit_code, exited.oom_killed, exited.finished_at.isoformat()) == (
        137, True, "2023-11-14T22:13:20.500000+00:00")
    assert exited.container_id == "containerd://c1"  # the attempt it was, for one the agent never saw start
    assert exited.started_at is not None and exited.started_at.isoformat() == "2023-11-14T22:13:20+00:00"
    assert not container_exit(cri.ContainerStatus(exit_code=1, reason="Error", finished_at=1), "containerd").oom_killed


def test_a_sandbox_allows_privileged_containers_only_when_one_is() -> None:
    assert not sandbox_config(POD, 0).linux.security_context.privileged
    assert sandbox_config(replace(POD, privileged=True), 0).linux.security_context.privileged
