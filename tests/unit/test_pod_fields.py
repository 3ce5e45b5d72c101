"""Issue 16's rule: every v1 Pod field is known; the ones nodeagent cannot honour are refused, naming the field."""

from __future__ import annotations

import pytest

from nodeagent.api.manifest import load_manifest
from tests.unit.test_validation import pod, problems, warnings

C = "  containers: [{name: c, image: x}]\n"


@pytest.mark.parametrize(("spec", "expected"), [
    ("  shareProcessNamespace: true\n  hostPID: true\n" + C,
     "spec.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled"),
    ("  hostUsers: false\n" + C, "spec.hostUsers: Forbidden: user namespaces are not supported by nodeagent yet"),
    ("  runtimeClassName: kata\n" + C, "spec.runtimeClassName: Forbidden: nodeagent has no RuntimeClasses"),
    ("  activeDeadlineSeconds: 0\n" + C, "spec.activeDeadlineSeconds: Invalid value: 0"),
    ("  ephemeralContainers: [{name: e, image: x}]\n" + C, "spec.ephemeralContainers: Forbidden: ephemeral"),
    ("  readinessGates: [{conditionType: x}]\n" + C, "spec.readinessGates: Forbidden"),
    ("  os: {name: windows}\n" + C, "spec.os.name: Forbidden"),
    ("  securityContext: {sysctls: [{name: net.core.somaxconn, value: '1024'}]}\n" + C,
     'spec.securityContext.sysctls[0]: Forbidden: SysctlForbidden: forbidden sysctl: "net.core.somaxconn" not '
     'allowlisted'),
    ("  hostNetwork: true\n  securityContext: {sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}]}\n" + C,
     'spec.securityContext.sysctls[0]: Forbidden: SysctlForbidden: sysctl "net.ipv4.tcp_syncookies" not allowed '
     'with host net enabled'),
    ("  securityContext: {sysctls: [{name: 'Kernel.X', value: '1'}]}\n" + C,
     'spec.securityContext.sysctls[0].name: Invalid value: "Kernel.X"'),
    ("  securityContext: {supplementalGroupsPolicy: Strict}\n" + C,
     "spec.securityContext.supplementalGroupsPolicy: Forbidden: Strict is not supported by nodeagent yet"),
    ("  securityContext: {seccompProfile: {type: Magic}}\n" + C,
     'spec.securityContext.seccompProfile.type: Unsupported value: "Magic"'),
    ("  securityContext: {seccompProfile: {type: Localhost}}\n" + C,
     "spec.securityContext.seccompProfile.localhostProfile: Required value"),
    ("  securityContext: {seccompProfile: {type: Localhost, localhostProfile: ../../etc/x.json}}\n" + C,
     "spec.securityContext.seccompProfile.localhostProfile: Invalid value"),
    ("  containers: [{name: c, image: x, securityContext: {appArmorProfile: {type: RuntimeDefault, "
     "localhostProfile: p}}}]\n", "spec.containers[0].securityContext.appArmorProfile.localhostProfile: Invalid"),
    ("  initContainers: [{name: s, image: x, restartPolicy: OnFailure}]\n" + C,
     'spec.initContainers[0].restartPolicy: Unsupported value: "OnFailure": supported values: "Always"'),
    ("  containers: [{name: c, image: x, restartPolicy: Always}]\n",
     "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"),
    ("  initContainers: [{name: s, image: x, readinessProbe: {exec: {command: [sh]}}}]\n" + C,
     "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without "
     "restartPolicy=Always"),
    ("  initContainers: [{name: s, image: x, lifecycle: {preStop: {exec: {command: [sh]}}}}]\n" + C,
     "spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always"),
    ("  containers: [{name: c, image: x, lifecycle: {stopSignal: SIGUSR1}}]\n",
     "spec.containers[0].lifecycle.stopSignal: Forbidden: may not be set for containers with empty `spec.os.name`"),
    ("  os: {name: linux}\n  containers: [{name: c, image: x, lifecycle: {stopSignal: SIGFOO}}]\n",
     'spec.containers[0].lifecycle.stopSignal: Unsupported value: "SIGFOO": supported values: "SIGABRT", '),
    ("  os: {name: linux}\n  containers: [{name: c, image: x, lifecycle: {stopSignal: QUIT}}]\n",
     'spec.containers[0].lifecycle.stopSignal: Unsupported value: "QUIT"'),
    ("  containers: [{name: c, image: x, readinessProbe: {exec: {command: [true]}, terminationGracePeriodSeconds: 1}}]\n",
     "spec.containers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 1: must not be set for "
     "readinessProbes"),
    ("  containers: [{name: c, image: x, terminationMessagePolicy: Always}]\n",
     'spec.containers[0].terminationMessagePolicy: Unsupported value: "Always"'),
    ("  containers: [{name: c, image: x, livenessProbe: {exec: {command: [true]}, terminationGracePeriodSeconds: 0}}]\n",
     "spec.containers[0].livenessProbe.terminationGracePeriodSeconds: Invalid value: 0: must be greater than 0"),
    ("  volumes: [{name: d, hostPath: {path: /d}}]\n"
     "  containers: [{name: c, image: x, volumeMounts: [{name: d, mountPath: /d, mountPropagation: Bidirectional}]}]\n",
     "spec.containers[0].volumeMounts[0].mountPropagation: Forbidden: Bidirectional mount propagation is available "
     "only to privileged containers"),
    ("  volumes: [{name: d, projected: {sources: [{serviceAccountToken: {path: token}}]}}]\n" + C,
     "spec.volumes[0].projected.sources[0].serviceAccountToken: Forbidden: a static pod may not project "
     "serviceAccountToken"),
    ("  volumes: [{name: d, projected: {sources: [{downwardAPI: {items: [{path: a, fieldRef: {fieldPath: "
     "metadata.name}}]}}, {downwardAPI: {items: [{path: a, fieldRef: {fieldPath: metadata.uid}}]}}]}}]\n" + C,
     'spec.volumes[0].projected.sources[1].downwardAPI.items[0].path: Invalid value: "a": conflicting duplicate'),
    ("  volumes: [{name: d, downwardAPI: {items: [{path: ../x, fieldRef: {fieldPath: metadata.name}}]}}]\n" + C,
     "spec.volumes[0].downwardAPI.items[0].path: Invalid value: \"../x\": must not contain '..'"),
    ("  volumes: [{name: d, downwardAPI: {items: [{path: ip, fieldRef: {fieldPath: status.podIP}}]}}]\n" + C,
     'spec.volumes[0].downwardAPI.items[0].fieldRef.fieldPath: Unsupported value: "status.podIP"'),
    ("  volumes: [{name: d, downwardAPI: {items: [{path: cpu, resourceFieldRef: {resource: limits.cpu}}]}}]\n" + C,
     "spec.volumes[0].downwardAPI.items[0].resourceFieldRef.containerName: Required value"),
    ("  volumes: [{name: d, emptyDir: {medium: HugePages}}]\n" + C,
     "spec.volumes[0].emptyDir.medium: Forbidden: hugetlbfs emptyDirs are not supported by nodeagent yet"),
    ("  dnsPolicy: None\n" + C, "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None"),
    ("  hostAliases: [{ip: kubernetes, hostnames: [a]}]\n" + C, 'spec.hostAliases[0].ip: Invalid value: "kubernetes"'),
], ids=lambda v: v[:50] if isinstance(v, str) else v)
def test_refused_or_invalid(spec: str, expected: str) -> None:
    found = problems(pod(spec))
    assert any(p.startswith(expected) for p in found), found


def test_deletion_grace_period_is_refused() -> None:
    found = problems(pod(C, meta="{name: web, deletionGracePeriodSeconds: 5}"))
    assert found == ["metadata.deletionGracePeriodSeconds: Forbidden: not supported by nodeagent yet"]


def test_every_newer_field_is_known() -> None:
    """Fields that are honoured or accepted are not unknown and not refused."""
    text = pod("""  hostAliases: [{ip: 127.0.0.1, hostnames: [kubernetes]}]
  dnsPolicy: None
  dnsConfig: {nameservers: [10.0.0.10], searches: [example.com], options: [{name: ndots, value: '2'}]}
  schedulingGates: [{name: g}]
  os: {name: linux}
  securityContext:
    seccompProfile: {type: RuntimeDefault}
    appArmorProfile: {type: Unconfined}
    seLinuxChangePolicy: Recursive
    supplementalGroupsPolicy: Merge
    sysctls: [{name: net/ipv4/ip_local_port_range, value: 1024 65000}, {name: kernel.shm_rmid_forced, value: '1'}]
  containers:
  - name: c
    image: x
    stdin: true
    stdinOnce: true
    tty: true
    resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]
    securityContext: {seccompProfile: {type: Unconfined}, procMount: Default}
""")
    assert problems(text) == []
    assert warnings(text) == []


def test_a_volume_without_a_source_is_an_empty_dir() -> None:
    """The API defaults a volume with no source to emptyDir (OpenShift's keepalived relies on it)."""
    text = pod("  volumes: [{name: scratch}]\n"
               "  containers: [{name: c, image: x, volumeMounts: [{name: scratch, mountPath: /s}]}]\n")
    result = load_manifest(text.encode(), origin="/m/p.yaml", source="file", node_name="node1")
    assert [str(p) for p in result.problems] == []
    (static,) = result.pods
    (volume,) = static.pod.spec.volumes or []
    assert volume.empty_dir is not None and volume.empty_dir.medium == ""
