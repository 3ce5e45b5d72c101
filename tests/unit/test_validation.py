"""Validation as the API server words it, every error at once, with field paths."""

import pytest

from nodeagent.api.manifest import load_manifest
from nodeagent.api.model import Container
from nodeagent.errors import NodeAgentError


def problems(text: str) -> list[str]:
    result = load_manifest(text.encode(), origin="/m/p.yaml", source="file", node_name="node1")
    return [str(p) for p in result.problems]


def warnings(text: str) -> list[str]:
    result = load_manifest(text.encode(), origin="/m/p.yaml", source="file", node_name="node1")
    return [str(p) for p in result.warnings]


def pod(spec: str, meta: str = "{name: web}") -> str:
    return f"apiVersion: v1\nkind: Pod\nmetadata: {meta}\nspec:\n{spec}"


def test_every_error_is_reported_with_its_path() -> None:
    found = problems(pod("""
  restartPolicy: Sometimes
  containers:
  - name: c
    image: x
    command: [sleep, 10]
    resources: {limits: {memory: 12Q, cpu: "1"}, requests: {cpu: "2"}}
  - name: c
    image: y
    ports: [{containerPort: 70000}]
""", meta="{name: Web}"))
    assert found == [
        "spec.containers[0].command[1]: Invalid value: 10: must be a string",
        "spec.containers[0].resources.limits.memory: quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'metadata.name: Invalid value: "Web": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. "
        "'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
        "[a-z0-9])?)*')",
        'spec.containers[0].resources.requests.cpu: Invalid value: "2": must be less than or equal to cpu '
        "limit of 1",
        'spec.containers[1].name: Duplicate value: "c"',
        "spec.containers[1].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "Never", "OnFailure"',
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("  containers: []\n", "spec.containers: Required value"),
        ("  containers: [{image: x}]\n", "spec.containers[0].name: Required value"),
        ("  containers: [{name: c}]\n", "spec.containers[0].image: Required value"),
        ("  containers: [{name: C_1, image: x}]\n", 'spec.containers[0].name: Invalid value: "C_1": a lowercase RFC 1123 label'),
        ("  initContainers: [{name: c, image: x}]\n  containers: [{name: c, image: x}]\n",
         'spec.containers[0].name: Duplicate value: "c"'),
        ("  containers: [{name: c, image: x, resources: {limits: {memory: '-1'}}}]\n",
         'spec.containers[0].resources.limits.memory: Invalid value: "-1": must be greater than or equal to 0'),
        ("  containers: [{name: c, image: x, resources: {requests: {memory: 2Gi}, limits: {memory: 1Gi}}}]\n",
         'spec.containers[0].resources.requests.memory: Invalid value: "2Gi": must be less than or equal to memory limit of 1Gi'),
        ("  containers: [{name: c, image: x, resources: {limits: {gpu: '1'}}}]\n",
         'spec.containers[0].resources.limits.gpu: Invalid value: "gpu": must be a standard resource type or fully qualified'),
        ("  containers: [{name: c, image: x, imagePullPolicy: Sometimes}]\n",
         'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never"'),
        ("  containers: [{name: c, image: x, ports: [{containerPort: 80, protocol: ICMP}]}]\n",
         'spec.containers[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"'),
        ("  hostNetwork: true\n  containers: [{name: c, image: x, ports: [{containerPort: 80, hostPort: 8080}]}]\n",
         "spec.containers[0].ports[0].hostPort: Invalid value: 8080: must match `containerPort` when `hostNetwork` is true"),
        ("  containers: [{name: c, image: x, env: [{name: 1A, value: v}]}]\n",
         'spec.containers[0].env[0].name: Invalid value: "1A": a valid environment variable name'),
        ("  containers: [{name: c, image: x, env: [{name: A, valueFrom: {fieldRef: {fieldPath: spec.bogus}}}]}]\n",
         'spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.bogus"'),
        ("  containers: [{name: c, image: x, env: [{name: A, valueFrom: {configMapKeyRef: {name: m, key: k}}}]}]\n",
         "spec.containers[0].env[0].valueFrom.configMapKeyRef: Forbidden: a static pod may not reference configmaps"),
        ("  containers: [{name: c, image: x, env: [{name: A, valueFrom: {secretKeyRef: {name: m, key: k}}}]}]\n",
         "spec.containers[0].env[0].valueFrom.secretKeyRef: Forbidden: a static pod may not reference secrets"),
        ("  containers: [{name: c, image: x, envFrom: [{configMapRef: {name: m}}]}]\n",
         "spec.containers[0].envFrom: Forbidden"),
        ("  serviceAccountName: builder\n  containers: [{name: c, image: x}]\n",
         "spec.serviceAccountName: Forbidden: a static pod may not reference service accounts"),
        ("  volumes: [{name: data, persistentVolumeClaim: {claimName: c}}]\n  containers: [{name: c, image: x}]\n",
         "spec.volumes[0].persistentVolumeClaim: Forbidden: a static pod may not reference persistentVolumeClaim volumes"),
        ("  volumes: [{name: data, nfs: {server: s, path: /}}]\n  containers: [{name: c, image: x}]\n",
         "spec.volumes[0].nfs: Forbidden: nfs volumes: is not supported by nodeagent"),
        ("  volumes: [{name: d, emptyDir: {}}, {name: d, emptyDir: {}}]\n  containers: [{name: c, image: x}]\n",
         'spec.volumes[1].name: Duplicate value: "d"'),
        ("  volumes: [{name: d, hostPath: {path: etc}}]\n  containers: [{name: c, image: x}]\n",
         'spec.volumes[0].hostPath.path: Invalid value: "etc": must be an absolute path'),
        ("  containers: [{name: c, image: x, volumeMounts: [{name: nope, mountPath: /d}]}]\n",
         'spec.containers[0].volumeMounts[0].name: Not found: "nope"'),
        ("  volumes: [{name: d, emptyDir: {}}]\n  containers: [{name: c, image: x, volumeMounts: [{name: d, mountPath: /a/../etc}]}]\n",
         "spec.containers[0].volumeMounts[0].mountPath: Invalid value: \"/a/../etc\": must not contain '..'"),
        ("  containers: [{name: c, image: x, livenessProbe: {periodSeconds: 5}}]\n",
         "spec.containers[0].livenessProbe: Required value: must specify a handler type"),
        ("  containers: [{name: c, image: x, livenessProbe: {exec: {command: [cat]}, tcpSocket: {port: 1}}}]\n",
         "spec.containers[0].livenessProbe: Forbidden: may not specify more than 1 handler type"),
        ("  containers: [{name: c, image: x, livenessProbe: {exec: {command: [cat]}, successThreshold: 2}}]\n",
         "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"),
        ("  containers: [{name: c, image: x, lifecycle: {preStop: {httpGet: {port: 70000}}}}]\n",
         "spec.containers[0].lifecycle.preStop.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
        ("  terminationGracePeriodSeconds: -5\n  containers: [{name: c, image: x}]\n",
         "spec.terminationGracePeriodSeconds: Invalid value: -5: must be greater than or equal to 0"),
        ("  dnsPolicy: Magic\n  containers: [{name: c, image: x}]\n", 'spec.dnsPolicy: Unsupported value: "Magic"'),
        ("  containers: [{name: c, image: x, securityContext: {runAsUser: -1}}]\n",
         "spec.containers[0].securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else v,
)
def test_rule(spec: str, expected: str) -> None:
    found = problems(pod(spec))
    assert any(p.startswith(expected) for p in found), found


def test_uid_must_be_safe_for_paths() -> None:
    found = problems(pod("  containers: [{name: c, image: x}]\n", meta="{name: web, uid: ../../etc}"))
    assert found == ['metadata.uid: Invalid value: "../../etc": must be 1 to 64 letters, digits or \'-\', '
                     "starting with a letter or digit"]


def test_static_name_must_stay_a_subdomain() -> None:
    found = problems(pod("  containers: [{name: c, image: x}]\n", meta="{name: " + "a" * 250 + "}"))
    assert any("metadata.name" in p and "no more than 253" in p for p in found)


def test_same_pod_twice_in_one_file() -> None:
    one = pod("  containers: [{name: c, image: x}]\n")
    found = problems(one + "---\n" + one)
    assert found == ['document 2: metadata.name: Duplicate value: "web"']


def test_list_item_errors_name_their_item() -> None:
    text = ('{"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": '
            '[{"name": "c", "image": "x"}]}}, {"kind": "Pod", "metadata": {"name": "b"}, "spec": {}}]}')
    assert problems(text) == ["items[1]: spec.containers: Required value"]


def test_unknown_fields_are_warnings_with_a_hint() -> None:
    text = pod("  containers: [{name: c, image: x, resource: {limits: {memory: 1Gi}}}]\n  restartPolicey: Never\n")
    assert problems(text) == []
    assert warnings(text) == [
        'spec.restartPolicey: unknown field "restartPolicey" (did you mean "restartPolicy"?)',
        'spec.containers[0].resource: unknown field "resource" (did you mean "resources"?)',
    ]


def test_snake_case_is_not_a_field() -> None:
    text = pod("  containers: [{name: c, image: x, image_pull_policy: Never}]\n")
    assert warnings(text) == [
        'spec.containers[0].image_pull_policy: unknown field "image_pull_policy" (did you mean "imagePullPolicy"?)'
    ]


def test_cluster_fields_are_accepted_quietly() -> None:
    text = pod("  tolerations: [{operator: Exists}]\n  nodeSelector: {a: b}\n  containers: [{name: c, image: x}]\n",
               meta="{name: web, creationTimestamp: null, resourceVersion: '12'}") + "status: {phase: Running}\n"
    assert problems(text) == []
    assert warnings(text) == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("{name: A, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 10m}}}",
         "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Invalid value: \"10m\": only divisor's values "
         "1m, 1 are supported with the cpu resource"),
        ("{name: A, valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 2Mi}}}",
         "spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor: Invalid value: \"2Mi\": only divisor's "
         "values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource"),
        ("{name: A, valueFrom: {resourceFieldRef: {resource: limits.memory, containerName: ghost}}}",
         'spec.containers[0].env[0].valueFrom.resourceFieldRef.containerName: Invalid value: "ghost": must be the '
         "name of a container in the pod"),
    ],
    ids=["cpu-divisor", "memory-divisor", "unknown-container"],
)
def test_resource_field_refs(env: str, expected: str) -> None:
    assert problems(pod(f"  containers: [{{name: c, image: x, env: [{env}]}}]\n")) == [expected]


@pytest.mark.parametrize("divisor", ["1m", "1", "0.001"])
def test_allowed_cpu_divisors(divisor: str) -> None:
    env = f"{{name: A, valueFrom: {{resourceFieldRef: {{resource: limits.cpu, divisor: '{divisor}'}}}}}}"
    assert problems(pod(f"  containers: [{{name: c, image: x, env: [{env}]}}]\n")) == []


def test_a_validated_container_always_has_its_name() -> None:
    result = load_manifest(pod("  initContainers: [{name: setup, image: x}]\n  containers: [{name: web, image: x}]\n")
                           .encode(), origin="/m/p.yaml", source="file", node_name="node1")
    assert [c.valid_name for c in result.pods[0].pod.all_containers()] == ["setup", "web"]
    assert problems(pod("  containers: [{image: x}]\n")) == ["spec.containers[0].name: Required value"]
    with pytest.raises(NodeAgentError, match="not validated"):
        _ = Container().valid_name
