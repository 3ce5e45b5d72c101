"""Issue 16's PodSpec fields on real pods (root): hostAliases and dnsConfig in the pod's /etc files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.integration.harness import NODE, AgentHarness, wait_for


def run_once(agent: AgentHarness, name: str, script: str, extra: str = "", *, container_extra: str = "") -> str:
    agent.write(f"{name}.yaml", f"""
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
{extra}  containers:
  - name: c
    image: x
    command: [sh, -c, {json.dumps(script)}]
{container_extra}""")
    wait_for(lambda: "terminated" in agent.container_status(name, "c")["state"], what=f"{name} done")
    return agent.cli("logs", name).stdout


ALIASES = """  hostAliases:
  - {ip: 127.0.0.1, hostnames: [kubernetes, kubernetes.default]}
  - {ip: 10.1.2.3, hostnames: [foo.local]}
"""


def test_host_aliases_in_the_pods_hosts_file(agent: AgentHarness) -> None:
    hosts = run_once(agent, "aliased", "cat /etc/hosts", ALIASES)
    assert hosts.endswith("\n# Entries added by HostAliases.\n127.0.0.1\tkubernetes\tkubernetes.default\n"
                          "10.1.2.3\tfoo.local\n"), hosts
    assert f"\taliased-{NODE}\n" in hosts


def test_host_aliases_on_the_host_network(agent: AgentHarness) -> None:
    """kube-vip's manifests: hostNetwork, and `kubernetes` mapped to 127.0.0.1."""
    with open("/etc/hosts") as handle:
        node_hosts = handle.read()
    hosts = run_once(agent, "vip", "cat /etc/hosts", "  hostNetwork: true\n" + ALIASES)
    assert hosts.startswith("# Kubernetes-managed hosts file (host network).\n" + node_hosts), hosts
    assert hosts.endswith("127.0.0.1\tkubernetes\tkubernetes.default\n10.1.2.3\tfoo.local\n")
    with open("/etc/hosts") as handle:
        assert handle.read() == node_hosts  # the node's own file is untouched


def test_dns_policy_none_with_dns_config(agent: AgentHarness) -> None:
    resolv = run_once(agent, "resolver", "cat /etc/resolv.conf", """  dnsPolicy: None
  dnsConfig:
    nameservers: [10.96.0.10]
    searches: [ns1.svc.cluster-domain.example]
    options: [{name: ndots, value: '2'}, {name: edns0}]
""")
    assert resolv == "nameserver 10.96.0.10\nsearch ns1.svc.cluster-domain.example\noptions ndots:2 edns0\n"


def test_the_process_runtime_refuses_a_seccomp_filter_it_cannot_apply(agent: AgentHarness) -> None:
    agent.write("filtered.yaml", """
kind: Pod
metadata: {name: filtered}
spec:
  securityContext: {seccompProfile: {type: RuntimeDefault}}
  containers: [{name: c, image: x, command: [sleep, '60']}]
""")
    wait_for(lambda: agent.container_status("filtered", "c")["state"].get("waiting", {}).get("reason")
             == "CreateContainerConfigError", what="CreateContainerConfigError")
    message = agent.container_status("filtered", "c")["state"]["waiting"]["message"]
    assert message.startswith("securityContext.seccompProfile: RuntimeDefault cannot be applied by the process runtime")


def test_an_unsafe_sysctl_is_refused_with_the_kubelets_words(agent: AgentHarness) -> None:
    agent.write("unsafe.yaml", """
kind: Pod
metadata: {name: unsafe}
spec:
  securityContext: {sysctls: [{name: kernel.msgmax, value: '65536'}]}
  containers: [{name: c, image: x, command: [sleep, '60']}]
""")
    expected = ('spec.securityContext.sysctls[0]: Forbidden: SysctlForbidden: forbidden sysctl: "kernel.msgmax" not '
                "allowlisted")
    wait_for(lambda: any(expected in event["message"] for event in agent.events()), what="the refusal")


DOWNWARD = """  volumes:
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: sub/name, fieldRef: {fieldPath: metadata.name}}
"""


def test_a_downward_api_volume(agent: AgentHarness) -> None:
    agent.write("downward.yaml", f"""
kind: Pod
metadata: {{name: downward, labels: {{app: web, tier: front}}}}
spec:
  restartPolicy: Never
{DOWNWARD}  containers:
  - name: c
    image: x
    command: [sh, -c, "cat /info/labels; echo; cat /info/sub/name; echo; touch /info/x 2>/dev/null || echo read-only"]
    volumeMounts: [{{name: info, mountPath: /info}}]
""")
    wait_for(lambda: "terminated" in agent.container_status("downward", "c")["state"], what="downward done")
    assert agent.cli("logs", "downward").stdout == f'app="web"\ntier="front"\ndownward-{NODE}\nread-only\n'


def test_a_projected_volume_of_downward_api_sources(agent: AgentHarness) -> None:
    agent.write("projected.yaml", """
kind: Pod
metadata: {name: projected, labels: {app: web}}
spec:
  restartPolicy: Never
  volumes:
  - name: info
    projected:
      defaultMode: 0400
      sources:
      - downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
  containers:
  - name: c
    image: x
    command: [sh, -c, "cat /info/labels; echo; cat /info/ns; echo; stat -c %a /info/ns"]
    volumeMounts: [{name: info, mountPath: /info}]
""")
    wait_for(lambda: "terminated" in agent.container_status("projected", "c")["state"], what="projected done")
    assert agent.cli("logs", "projected").stdout == 'app="web"\ndefault\n400\n'


def test_a_read_only_root_and_read_only_volume_keep_their_mounts_flags(agent: AgentHarness, tmp_path: Path) -> None:
    """The process runtime's mount namespace (nodeagent.runtime.mountns): / and a readOnly volume read-only,
    the volume's own flags kept as `mount -o remount,bind,ro` keeps them, a writable volume writable."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,size=1m", "nodeagent-test", str(shared)], check=True)
    try:
        log = run_once(agent, "readonly", f"touch /root-file 2>/dev/null || echo root read-only; "
                                          f"touch {shared}/x 2>/dev/null || echo volume read-only; "
                                          f"awk '$5 == \"{shared}\" {{print $6}}' /proc/self/mountinfo | tail -n 1; "
                                          "touch /scratch/x && echo scratch writable", f"""  volumes:
  - {{name: shared, hostPath: {{path: {shared}}}}}
  - {{name: scratch, emptyDir: {{}}}}
""", container_extra=f"""    securityContext: {{readOnlyRootFilesystem: true}}
    volumeMounts:
    - {{name: shared, mountPath: {shared}, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
""")
    finally:
        subprocess.run(["umount", str(shared)], check=True)
    assert log == "root read-only\nvolume read-only\nro,nosuid,nodev,relatime\nscratch writable\n", log

