"""A container's environment and command line: $(VAR) expansion, the downward API and resource references."""

import pytest

from nodeagent.agent.env import PodAddresses, command_line, container_env, expand, field_value
from nodeagent.api.identity import CONFIG_HASH
from nodeagent.api.manifest import StaticPod
from nodeagent.api.model import Container
from nodeagent.plan.settings import NodeInfo
from tests.conftest import load_pod

ADDRESSES = PodAddresses(host_ip="192.0.2.10", pod_ip="192.0.2.10")
NODE_CPU_MILLIS = 3500
NODE_MEMORY = 8 * 1024**3
NODE_STORAGE = 100 * 1024**3
NODE = NodeInfo(cpu_millis=4000, memory_bytes=16 * 1024**3, allocatable_cpu_millis=NODE_CPU_MILLIS,
                allocatable_memory_bytes=NODE_MEMORY, ephemeral_storage_bytes=NODE_STORAGE)
MiB = 1024**2


def container_of(pod: StaticPod, name: str) -> Container:
    return next(c for c in pod.pod.all_containers() if c.name == name)


def env_of(pod: StaticPod, name: str = "c", *, addresses: PodAddresses = ADDRESSES) -> dict[str, str]:
    return container_env(pod, container_of(pod, name), addresses, NODE)


def pod_with_env(env: str, *, resources: str = "", more: str = "") -> StaticPod:
    return load_pod(
        "apiVersion: v1\nkind: Pod\n"
        "metadata:\n  name: envdemo\n  namespace: team\n  labels: {app: web, tier: front}\n"
        "  annotations: {note: hello, example.com/owner: ops}\n"
        "spec:\n  containers:\n  - name: c\n    image: busybox\n"
        f"{resources}    env:\n{env}{more}"
    )


# -- expand: Kubernetes' $(VAR) expansion ---------------------------------------------------------------

VALUES = {"A": "x", "B": "y", "EMPTY": "", "DOLLAR": "$(A)"}


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("plain", "plain"),
        ("", ""),
        ("$(A)", "x"),
        ("pre-$(A)-post", "pre-x-post"),
        ("$(A)$(B)", "xy"),
        ("$(UNDEFINED)", "$(UNDEFINED)"),
        ("$(A) $(UNDEFINED) $(B)", "x $(UNDEFINED) y"),
        ("$(EMPTY)", ""),
        ("$$", "$"),
        ("$$$$", "$$"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$x"),
        ("$", "$"),
        ("a$", "a$"),
        ("$A", "$A"),
        ("a$b$(A)", "a$bx"),
        ("$(", "$("),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("$(A)B)", "xB)"),
        ("$($(A))", "$($(A))"),
        ("$(DOLLAR)", "$(A)"),
        ("(A)", "(A)"),
        ("é$(A)✓", "éx✓"),
    ],
    ids=["plain", "empty", "var", "embedded", "adjacent", "undefined-stays", "mixed", "defined-empty", "escaped-dollar",
         "two-escapes", "escaped-reference", "escape-then-var", "lone-dollar", "trailing-dollar", "dollar-letter",
         "dollar-letter-then-var", "unterminated-open", "unterminated-name", "empty-name", "closing-paren-after",
         "nested-is-not-expanded", "values-are-not-re-expanded", "no-dollar", "unicode"],
)
def test_expand(text: str, expanded: str) -> None:
    assert expand(text, VALUES) == expanded


def test_env_values_can_use_earlier_variables_only() -> None:
    pod = pod_with_env(
        "    - {name: A, value: one}\n"
        "    - {name: B, value: '$(A)-two'}\n"
        "    - {name: C, value: '$(D)'}\n"
        "    - {name: D, value: four}\n"
        "    - {name: SELF, value: '$(SELF)'}\n"
        "    - {name: ESC, value: '$$(A) costs $$5'}\n"
        "    - {name: CHAIN, value: '$(B)!'}\n"
    )
    assert env_of(pod) == {"A": "one", "B": "one-two", "C": "$(D)", "D": "four", "SELF": "$(SELF)",
                           "ESC": "$(A) costs $5", "CHAIN": "one-two!"}


def test_a_redefined_variable_sees_its_earlier_value() -> None:
    pod = pod_with_env("    - {name: A, value: one}\n    - {name: A, value: '$(A)+two'}\n")
    assert env_of(pod) == {"A": "one+two"}


def test_an_env_var_without_value_is_empty() -> None:
    assert env_of(pod_with_env("    - {name: EMPTY}\n")) == {"EMPTY": ""}


def test_the_order_of_the_environment_is_the_manifests() -> None:
    pod = pod_with_env("    - {name: Z, value: '1'}\n    - {name: A, value: '2'}\n    - {name: M, value: '3'}\n")
    assert list(env_of(pod)) == ["Z", "A", "M"]


# -- fieldRef: the downward API ----------------------------------------------------------------------------

FIELD_REFS = [
    ("metadata.name", "envdemo-node1"),
    ("metadata.namespace", "team"),
    ("metadata.labels['app']", "web"),
    ("metadata.labels['tier']", "front"),
    ("metadata.labels['missing']", ""),
    ("metadata.annotations['note']", "hello"),
    ("metadata.annotations['example.com/owner']", "ops"),
    ("spec.nodeName", "node1"),
    ("spec.serviceAccountName", ""),
    ("status.podIP", "192.0.2.10"),
    ("status.podIPs", "192.0.2.10"),
    ("status.hostIP", "192.0.2.10"),
    ("status.hostIPs", "192.0.2.10"),
]


@pytest.mark.parametrize(("path", "value"), FIELD_REFS, ids=[path for path, _ in FIELD_REFS])
def test_field_ref(path: str, value: str) -> None:
    pod = pod_with_env(f"    - name: V\n      valueFrom: {{fieldRef: {{fieldPath: \"{path}\"}}}}\n")
    assert env_of(pod) == {"V": value}


def test_field_ref_uid_and_config_annotations_are_the_static_pods() -> None:
    pod = pod_with_env(
        "    - name: UID\n      valueFrom: {fieldRef: {fieldPath: metadata.uid}}\n"
        f"    - name: HASH\n      valueFrom: {{fieldRef: {{fieldPath: \"metadata.annotations['{CONFIG_HASH}']\"}}}}\n"
        "    - name: SOURCE\n      valueFrom: {fieldRef: {fieldPath: \"metadata.annotations['kubernetes.io/config.source']\"}}\n"
    )
    env = env_of(pod)
    assert env["UID"] == pod.uid and len(pod.uid) == 32
    assert env["HASH"] == pod.config_hash
    assert env["SOURCE"] == "file"


def test_pod_and_host_ip_come_from_the_addresses() -> None:
    pod = pod_with_env("    - name: POD\n      valueFrom: {fieldRef: {fieldPath: status.podIP}}\n"
                       "    - name: HOST\n      valueFrom: {fieldRef: {fieldPath: status.hostIP}}\n")
    env = env_of(pod, addresses=PodAddresses(host_ip="10.0.0.5", pod_ip="10.1.2.3"))
    assert env == {"POD": "10.1.2.3", "HOST": "10.0.0.5"}


def test_field_ref_values_are_not_expanded_but_later_values_can_use_them() -> None:
    pod = load_pod(
        "kind: Pod\nmetadata:\n  name: p\n  annotations: {weird: '$(A)'}\nspec:\n  containers:\n  - name: c\n"
        "    image: x\n    env:\n    - {name: A, value: a}\n"
        "    - name: L\n      valueFrom: {fieldRef: {fieldPath: \"metadata.annotations['weird']\"}}\n"
        "    - name: NAME\n      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n"
        "    - {name: GREETING, value: 'hello $(NAME)'}\n",
        node_name="worker-7",
    )
    assert env_of(pod) == {"A": "a", "L": "$(A)", "NAME": "p-worker-7", "GREETING": "hello p-worker-7"}


@pytest.mark.parametrize(
    ("path", "value"),
    [("metadata.labels[\"app\"]", "web"), ("metadata.labels[app]", "web"), ("metadata.nope", "")],
    ids=["double-quotes", "no-quotes", "unknown-path"],
)
def test_field_value_is_lenient_with_paths_validation_refuses(path: str, value: str) -> None:
    pod = pod_with_env("    - {name: X, value: x}\n")
    assert field_value(path, pod, ADDRESSES) == value


# -- resourceFieldRef -----------------------------------------------------------------------------------

RESOURCES = "    resources:\n      limits: {cpu: 1500m, memory: 256Mi}\n      requests: {cpu: 250m, memory: 100Mi}\n"


def resource_ref(resource: str, divisor: str | None = None, container: str | None = None) -> str:
    extra = (f", divisor: '{divisor}'" if divisor else "") + (f", containerName: {container}" if container else "")
    return f"    - name: V\n      valueFrom: {{resourceFieldRef: {{resource: {resource}{extra}}}}}\n"


@pytest.mark.parametrize(
    ("resource", "divisor", "value"),
    [
        ("limits.cpu", None, "2"),
        ("limits.cpu", "1", "2"),
        ("limits.cpu", "1m", "1500"),
        ("requests.cpu", None, "1"),
        ("requests.cpu", "1m", "250"),
        ("limits.memory", None, str(256 * MiB)),
        ("limits.memory", "1", str(256 * MiB)),
        ("limits.memory", "1Mi", "256"),
        ("limits.memory", "1M", "269"),
        ("limits.memory", "1Gi", "1"),
        ("limits.memory", "1Ki", str(256 * 1024)),
        ("requests.memory", "1Mi", "100"),
        ("requests.memory", "1k", "104858"),
    ],
    ids=["limits-cpu-cores-rounded-up", "limits-cpu-divisor-1", "limits-cpu-millicores",
         "requests-cpu-rounded-up", "requests-cpu-millicores", "limits-memory-bytes", "limits-memory-divisor-1",
         "limits-memory-mebibytes", "limits-memory-megabytes-rounded-up", "limits-memory-gibibytes-rounded-up",
         "limits-memory-kibibytes", "requests-memory-mebibytes", "requests-memory-kilobytes-rounded-up"],
)
def test_resource_field_ref_with_limits_set(resource: str, divisor: str | None, value: str) -> None:
    pod = pod_with_env(resource_ref(resource, divisor), resources=RESOURCES)
    assert env_of(pod) == {"V": value}


@pytest.mark.parametrize(
    ("resource", "divisor", "value"),
    [
        ("limits.cpu", None, "4"),  # 3500m of allocatable cpu, rounded up to whole cores
        ("limits.cpu", "1m", str(NODE_CPU_MILLIS)),
        ("limits.memory", None, str(NODE_MEMORY)),
        ("limits.memory", "1Mi", str(NODE_MEMORY // MiB)),
        ("requests.cpu", None, "0"),
        ("requests.cpu", "1m", "0"),
        ("requests.memory", None, "0"),
    ],
    ids=["limits-cpu-is-node-allocatable", "limits-cpu-millicores-is-node-allocatable",
         "limits-memory-is-node-allocatable", "limits-memory-mebibytes-is-node-allocatable",
         "requests-cpu-absent-is-zero", "requests-cpu-millicores-absent-is-zero", "requests-memory-absent-is-zero"],
)
def test_resource_field_ref_without_limits_falls_back_to_the_node(resource: str, divisor: str | None,
                                                                  value: str) -> None:
    assert env_of(pod_with_env(resource_ref(resource, divisor))) == {"V": value}


def test_requests_defaulted_from_limits_are_seen() -> None:
    pod = pod_with_env(resource_ref("requests.memory", "1Mi"), resources="    resources: {limits: {memory: 64Mi}}\n")
    assert env_of(pod) == {"V": "64"}


def test_a_limit_set_on_one_resource_only() -> None:
    pod = pod_with_env(resource_ref("limits.cpu", "1m") + resource_ref("limits.memory", "1Mi").replace("name: V", "name: M"),
                       resources="    resources: {limits: {memory: 64Mi}}\n")
    assert env_of(pod) == {"V": str(NODE_CPU_MILLIS), "M": "64"}


def test_resource_field_ref_may_name_another_container() -> None:
    pod = pod_with_env(resource_ref("limits.memory", "1Mi", container="side"),
                       more="  - name: side\n    image: busybox\n    resources: {limits: {memory: 32Mi}}\n")
    assert env_of(pod) == {"V": "32"}


def test_ephemeral_storage_with_a_limit() -> None:
    pod = pod_with_env(resource_ref("limits.ephemeral-storage", "1Mi"),
                       resources="    resources: {limits: {ephemeral-storage: 2Gi}}\n")
    assert env_of(pod) == {"V": "2048"}


def test_ephemeral_storage_without_a_limit_is_the_nodes_allocatable_storage() -> None:
    assert env_of(pod_with_env(resource_ref("limits.ephemeral-storage"))) == {"V": str(NODE_STORAGE)}


# -- command and args ----------------------------------------------------------------------------------

def test_command_and_args_are_expanded_with_the_containers_environment() -> None:
    pod = pod_with_env(
        "    - name: POD_NAME\n      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n"
        "    - {name: GREETING, value: 'hi $(POD_NAME)'}\n"
        + resource_ref("limits.memory", "1Mi").replace("name: V", "name: MEM_MB"),
        resources=RESOURCES,
        more="    command: ['/bin/sh', '-c', 'echo $(GREETING) $$(HOME) $(MISSING) $$HOME']\n"
             "    args: ['$(POD_NAME)', '--memory=$(MEM_MB)Mi', '$(MEM_MB)$(MEM_MB)', '$$']\n",
    )
    container = container_of(pod, "c")
    env = env_of(pod)
    command, args = command_line(container, env)
    assert command == ("/bin/sh", "-c", "echo hi envdemo-node1 $(HOME) $(MISSING) $HOME")
    assert args == ("envdemo-node1", "--memory=256Mi", "256256", "$")


def test_no_command_or_args_is_empty() -> None:
    pod = pod_with_env("    - {name: A, value: a}\n")
    assert command_line(container_of(pod, "c"), env_of(pod)) == ((), ())


def test_command_expansion_uses_the_environment_given() -> None:
    pod = pod_with_env("    - {name: A, value: a}\n", more="    command: ['$(A)', '$(B)']\n")
    assert command_line(container_of(pod, "c"), {"A": "1", "B": "2"}) == (("1", "2"), ())
