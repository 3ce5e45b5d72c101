"""The v1 Pod fields a node agent needs, as pydantic models with Kubernetes' JSON names.

Types are checked strictly, as Go's JSON decoder does (a number is not a string). Values that the
API server defaults are defaulted here, at decoding; whether values make sense is
nodeagent.api.validation's job. Unknown fields are kept in `model_extra` so that they can be
reported with their path; fields that need an API server are modelled only to be refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from nodeagent.api.k8s import (
    IntOrString,
    K8sModel,
    ObjectFieldSelector,
    ResourceFieldSelector,
    ResourceList,
    is_quantity,
    validated_name,
)
from nodeagent.api.model_volumes import Volume


class ObjectMeta(K8sModel):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    # Set by an API server; accepted in manifests copied from a cluster, and ignored.
    generate_name: str | None = None
    creation_timestamp: Any = None
    resource_version: Any = None
    generation: Any = None
    self_link: Any = None
    managed_fields: Any = None
    owner_references: Any = None
    finalizers: Any = None
    deletion_timestamp: Any = None
    # Not supported yet (issue 16, with the lifecycle work): refused when set.
    deletion_grace_period_seconds: int | None = None


class EnvVarSource(K8sModel):
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    # Need an API server: refused for static pods.
    config_map_key_ref: Any = None
    secret_key_ref: Any = None


class EnvVar(K8sModel):
    name: str | None = None
    value: str | None = None
    value_from: EnvVarSource | None = None


class ContainerPort(K8sModel):
    name: str | None = None
    container_port: int | None = None
    host_port: int | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")
    protocol: str = "TCP"


class ResourceRequirements(K8sModel):
    limits: ResourceList | None = None
    requests: ResourceList | None = None
    claims: Any = None  # DRA claims need an API server: refused

    @model_validator(mode="before")
    @classmethod
    def _requests_default_to_limits(cls, data: Any) -> Any:
        """API defaulting: a resource with a limit and no request is requested at its limit."""
        if isinstance(data, dict) and isinstance(data.get("limits"), dict) and data["limits"]:
            requests = data.get("requests")
            if requests is None or isinstance(requests, dict):
                # An invalid limit is reported once, at limits, not copied into a second error.
                valid = {name: raw for name, raw in data["limits"].items() if is_quantity(raw)}
                data = {**data, "requests": {**valid, **(requests or {})}}
        return data


class VolumeMount(K8sModel):
    name: str | None = None
    mount_path: str | None = None
    read_only: bool = False
    sub_path: str | None = None
    mount_propagation: str | None = None

    @property
    def valid_name(self) -> str:
        return validated_name(self.name, "a volumeMount")


class ExecAction(K8sModel):
    command: list[str] | None = None


class HTTPHeader(K8sModel):
    name: str | None = None
    value: str | None = None


class HTTPGetAction(K8sModel):
    path: str = "/"
    port: IntOrString | None = None
    host: str | None = None
    scheme: str = "HTTP"
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(K8sModel):
    port: IntOrString | None = None
    host: str | None = None


class GRPCAction(K8sModel):
    port: int | None = None
    service: str | None = None


class SleepAction(K8sModel):
    seconds: int | None = None


class Probe(K8sModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: int = 0
    timeout_seconds: int = 1
    period_seconds: int = 10
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace_period_seconds: int | None = None


class LifecycleHandler(K8sModel):
    exec: ExecAction | None = None
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    sleep: SleepAction | None = None


class Lifecycle(K8sModel):
    post_start: LifecycleHandler | None = None
    pre_stop: LifecycleHandler | None = None
    stop_signal: str | None = None  # nodeagent.api.signals names; needs spec.os.name


class Capabilities(K8sModel):
    add: list[str] | None = None
    drop: list[str] | None = None


class SELinuxOptions(K8sModel):
    user: str | None = None
    role: str | None = None
    type: str | None = None
    level: str | None = None


class SeccompProfile(K8sModel):
    type: str | None = None
    localhost_profile: str | None = None


class AppArmorProfile(K8sModel):
    type: str | None = None
    localhost_profile: str | None = None


class Sysctl(K8sModel):
    name: str | None = None
    value: str | None = None


class SecurityContext(K8sModel):
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    privileged: bool | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    capabilities: Capabilities | None = None
    proc_mount: str | None = None
    seccomp_profile: SeccompProfile | None = None
    app_armor_profile: AppArmorProfile | None = None
    # Modelled to be refused when a container would start (nodeagent.agent.security): never ignored.
    se_linux_options: SELinuxOptions | None = None
    windows_options: Any = None


class PodSecurityContext(K8sModel):
    run_as_user: int | None = None
    run_as_group: int | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None
    fs_group_change_policy: str | None = None
    supplemental_groups: list[int] | None = None
    supplemental_groups_policy: str | None = None
    se_linux_change_policy: str | None = None
    seccomp_profile: SeccompProfile | None = None
    app_armor_profile: AppArmorProfile | None = None
    sysctls: list[Sysctl] | None = None
    # Modelled to be refused when a container would start (nodeagent.agent.security): never ignored.
    se_linux_options: SELinuxOptions | None = None
    windows_options: Any = None


def default_pull_policy(image: str | None) -> str:
    """Kubernetes: `:latest` or no tag (and no digest) means Always, anything else IfNotPresent."""
    if not image or "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


class Container(K8sModel):
    name: str | None = None
    image: str | None = None
    image_pull_policy: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    working_dir: str | None = None
    env: list[EnvVar] | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements = ResourceRequirements()
    volume_mounts: list[VolumeMount] | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    lifecycle: Lifecycle | None = None
    security_context: SecurityContext | None = None
    termination_message_path: str = "/dev/termination-log"
    termination_message_policy: str = "File"
    stdin: bool | None = None
    stdin_once: bool | None = None
    tty: bool | None = None
    # "Always" on an init container makes it a sidecar (KEP-753); on an app container, refused as by the API.
    restart_policy: str | None = None
    restart_policy_rules: Any = None
    # Refused: no block devices (they come from PersistentVolumeClaims); a static pod cannot be resized.
    volume_devices: Any = None
    resize_policy: Any = None
    # Needs an API server: refused for static pods.
    env_from: Any = None

    @property
    def is_sidecar(self) -> bool:
        """An init container with restartPolicy: Always (the API allows the field on init containers alone)."""
        return self.restart_policy == "Always"

    @property
    def valid_name(self) -> str:
        return validated_name(self.name, "a container")

    @model_validator(mode="before")
    @classmethod
    def _default_pull_policy(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("imagePullPolicy") is None:
            image = data.get("image")
            data = {**data, "imagePullPolicy": default_pull_policy(image if isinstance(image, str) else None)}
        return data


class HostAlias(K8sModel):
    ip: str | None = None
    hostnames: list[str] | None = None


class PodDNSConfigOption(K8sModel):
    name: str | None = None
    value: str | None = None


class PodDNSConfig(K8sModel):
    nameservers: list[str] | None = None
    searches: list[str] | None = None
    options: list[PodDNSConfigOption] | None = None


class PodSpec(K8sModel):
    containers: list[Container] | None = None
    init_containers: list[Container] | None = None
    restart_policy: str = "Always"
    termination_grace_period_seconds: int = 30
    active_deadline_seconds: int | None = None
    volumes: list[Volume] | None = None
    host_network: bool = False
    host_pid: bool = Field(default=False, alias="hostPID")
    host_ipc: bool = Field(default=False, alias="hostIPC")
    priority_class_name: str | None = None
    priority: int | None = None
    node_name: str | None = None
    dns_policy: str = "ClusterFirst"
    hostname: str | None = None
    subdomain: str | None = None
    security_context: PodSecurityContext | None = None
    host_aliases: list[HostAlias] | None = None
    dns_config: PodDNSConfig | None = None
    share_process_namespace: bool | None = None
    host_users: bool | None = None
    runtime_class_name: str | None = None
    set_hostname_as_fqdn: bool | None = Field(default=None, alias="setHostnameAsFQDN")
    hostname_override: str | None = None
    os: Any = None
    # Refused: need an API server (ephemeral containers are added through one; claims are DRA's).
    ephemeral_containers: Any = None
    resource_claims: Any = None
    overhead: ResourceList | None = None  # set by a RuntimeClass admission in a cluster; honoured as written
    resources: ResourceRequirements | None = None  # pod-level resources (beta, on by default since 1.34)
    # Need an API server: refused for static pods.
    service_account_name: str | None = None
    service_account: str | None = Field(default=None, alias="serviceAccount")
    # Meaningful to a scheduler or an API server only; accepted and ignored on a single node.
    automount_service_account_token: Any = None
    tolerations: Any = None
    node_selector: Any = None
    affinity: Any = None
    scheduler_name: Any = None
    enable_service_links: Any = None
    preemption_policy: Any = None
    topology_spread_constraints: Any = None
    image_pull_secrets: Any = None
    scheduling_gates: Any = None
    readiness_gates: Any = None


class Pod(K8sModel):
    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()
    # A status copied from a cluster means nothing here; accepted and ignored.
    status: Any = None

    def all_containers(self) -> list[Container]:
        """Init containers first, then app containers, as the kubelet walks them."""
        return [*(self.spec.init_containers or []), *(self.spec.containers or [])]
