"""The configuration file: a KubeletConfiguration, plus nodeagent's own fields under `nodeagent:`.

Field names, types, units and defaults are the kubelet's, so an existing kubelet config works as it
is. Unknown fields are reported (once, by whoever loads the file); invalid values raise ConfigError
naming the field path.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from nodeagent.api.fielderrors import from_validation_error, unsupported
from nodeagent.api.k8s import QuantityField
from nodeagent.api.names import dns1123_subdomain
from nodeagent.api.quantity import Quantity, parse_quantity
from nodeagent.api.unknown import find_unknown_fields
from nodeagent.defaults import SOCKET_PATH
from nodeagent.errors import ConfigError, FieldError
from nodeagent.images.budget import DEFAULT_LAYER_BYTES, DEFAULT_PULL_BYTES, UnpackLimits
from nodeagent.plan.settings import CgroupDriverName, PlanSettings, SwapBehavior

# Not 6443: static pods are often the control plane itself (kubeadm's kube-apiserver binds 0.0.0.0:6443), and
# not the kubelet's 10250/10255/10248 or the other components' 102xx ports, so the agent never takes a port a
# workload it runs, or a kubelet it hands over to, needs.
DEFAULT_API_PORT = 10260
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_NS_PER_UNIT = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _one_of(value: str, supported: tuple[str, ...]) -> str:
    """`value`, or ValueError worded as the API server's NotSupported ("Unsupported value: ...")."""
    if value not in supported:
        raise ValueError(unsupported("", value, supported).message)
    return value


def parse_duration_ns(raw: object) -> int:
    """A Go duration string ("20s", "1m30s", "100ms") in nanoseconds."""
    if not isinstance(raw, str) or not raw:
        raise ValueError('must be a duration such as "20s" or "100ms"')
    if raw == "0":
        return 0
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != position:
            break
        total += float(match.group(1)) * _NS_PER_UNIT[match.group(2)]
        position = match.end()
    if position != len(raw):
        raise ValueError(f'invalid duration "{raw}": must be a duration such as "20s" or "100ms"')
    return round(total)


Duration = Annotated[int, BeforeValidator(parse_duration_ns)]

_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token (RFC 9110)
_NOT_SHOWN = "(the value is not shown: it may be a secret)"


def _check_headers(raw: object) -> object:
    """staticPodURLHeader's shape, checked without ever quoting a value (nor a name that is not a header
    name): they hold credentials, and a config error ends up in logs and journals."""
    if raw is None:
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"must be a map of header names to lists of values {_NOT_SHOWN}")
    for name, values in raw.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"a header name is not a valid HTTP header name {_NOT_SHOWN}")
        if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
            raise ValueError(f'header "{name}": must be a list of strings {_NOT_SHOWN}')
        if any(char in value for value in values for char in "\r\n\0"):
            raise ValueError(f'header "{name}": a value contains a line break or NUL {_NOT_SHOWN}')
    return raw


def _check_url(raw: object) -> object:
    """staticPodURL, refused without quoting it: it may carry a password or a signed query."""
    if raw is not None and (not isinstance(raw, str) or (raw and not raw.startswith(("http://", "https://")))):
        raise ValueError("Invalid value: must be an http:// or https:// URL (the value is not shown: it may hold "
                         "credentials)")
    return raw


class _ConfigModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=False, serialize_by_alias=True,
        extra="allow", frozen=True, strict=True, arbitrary_types_allowed=True,
    )


class MemorySwapConfig(_ConfigModel):
    swap_behavior: str = ""

    @field_validator("swap_behavior")
    @classmethod
    def _known(cls, value: str) -> str:
        return value if value == "" else _one_of(value, ("NoSwap", "LimitedSwap"))  # "": unset, as the kubelet


class URLTLSConfig(_ConfigModel):
    """How to trust (and authenticate to) the staticPodURL server; unset: the system's CA store."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class NetworkConfig(_ConfigModel):
    """Pod networking for the process and runc runtimes (with cri, the runtime's CNI does it)."""

    enabled: bool = True  # false: every pod shares the node's network, as with hostNetwork
    bridge: str = "nodeagent0"
    pod_cidr: str = Field(default="10.88.0.0/16", alias="podCIDR")


class NodeAgentConfig(_ConfigModel):
    """Fields the kubelet does not have."""

    runtime: str = "process"
    node_name: str | None = None
    state_dir: str = "/var/lib/nodeagent"
    socket: str = SOCKET_PATH
    socket_group: str | None = None
    log_level: str = "INFO"
    metrics_bind_address: str | None = None  # "127.0.0.1:10255": /metrics and /healthz over TCP too
    static_pod_url_tls: URLTLSConfig = Field(default=URLTLSConfig(), alias="staticPodURLTLS")
    static_pod_url_empty_means_none: bool = Field(default=True, alias="staticPodURLEmptyMeansNone")
    runc_path: str = "runc"  # or crun
    registry_auth_file: str | None = None  # a docker config.json (the regcred format)
    insecure_registries: list[str] = []  # host[:port] reached over plain http
    # What one layer, and all the layers of one pull, may unpack to (uncompressed tar bytes): runc runtime
    image_max_layer_size: QuantityField = parse_quantity(DEFAULT_LAYER_BYTES)
    image_max_pull_size: QuantityField = parse_quantity(DEFAULT_PULL_BYTES)
    systemd_bus_address: str | None = None  # default: the system bus
    network: NetworkConfig = NetworkConfig()
    # The Kubernetes API for kubectl, over HTTPS ("" turns it off); nodeagent.kubeapi
    api_bind_address: str = f"127.0.0.1:{DEFAULT_API_PORT}"
    api_token_file: str | None = None  # the static token file; default <stateDir>/api/tokens.csv
    api_full_access_groups: list[str] = ["system:masters"]
    api_read_only_groups: list[str] = ["nodeagent:read-only"]

    @field_validator("api_bind_address")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value:
            _, colon, port = value.rpartition(":")
            if not colon or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f'Invalid value: "{value}": must be HOST:PORT with a port from 1 to 65535')
        return value

    @property
    def api_tokens_path(self) -> str:
        return self.api_token_file or f"{self.state_dir}/api/tokens.csv"

    @property
    def api_pki_dir(self) -> str:
        return f"{self.state_dir}/api/pki"

    @field_validator("runtime")
    @classmethod
    def _known_runtime(cls, value: str) -> str:
        return _one_of(value, ("process", "runc", "cri"))

    @field_validator("image_max_layer_size", "image_max_pull_size")
    @classmethod
    def _positive_size(cls, value: Quantity) -> Quantity:
        if value.value() <= 0:
            raise ValueError(f'Invalid value: "{value}": must be greater than zero')
        return value

    def unpack_limits(self) -> UnpackLimits:
        return UnpackLimits(layer_bytes=self.image_max_layer_size.value(), pull_bytes=self.image_max_pull_size.value())

    @field_validator("node_name")
    @classmethod
    def _valid_node_name(cls, value: str | None) -> str | None:
        if value is not None and (problems := dns1123_subdomain(value.lower())):
            raise ValueError(f'Invalid value: "{value}": {problems[0]}')
        return value


class KubeletConfig(_ConfigModel):
    api_version: str = "kubelet.config.k8s.io/v1beta1"
    kind: str = "KubeletConfiguration"
    static_pod_path: str = "/etc/kubernetes/manifests"
    static_pod_url: Annotated[str | None, BeforeValidator(_check_url)] = Field(default=None, alias="staticPodURL")
    static_pod_url_header: Annotated[dict[str, list[str]] | None, BeforeValidator(_check_headers)] = Field(
        default=None, alias="staticPodURLHeader")
    file_check_frequency: Duration = 20 * 10**9
    http_check_frequency: Duration = 20 * 10**9
    cgroup_driver: str | None = None
    cgroup_root: str = "/"
    cgroups_per_qos: bool = Field(default=True, alias="cgroupsPerQOS")
    fail_swap_on: bool = True
    memory_swap: MemorySwapConfig = MemorySwapConfig()
    cpu_cfs_quota: bool = Field(default=True, alias="cpuCFSQuota")
    cpu_cfs_quota_period: Duration = Field(default=100 * 10**6, alias="cpuCFSQuotaPeriod")
    pod_pids_limit: int = -1
    max_pods: int = 110
    system_reserved: dict[str, QuantityField] | None = None
    kube_reserved: dict[str, QuantityField] | None = None
    eviction_hard: dict[str, str] | None = None
    enforce_node_allocatable: list[str] = ["pods"]
    container_runtime_endpoint: str | None = None  # unset: the one known socket that answers (as kubeadm)
    feature_gates: dict[str, bool] | None = None
    memory_throttling_factor: float = 0.9
    single_process_oom_kill: bool | None = Field(default=None, alias="singleProcessOOMKill")
    pod_logs_dir: str | None = None
    container_log_max_size: str = "10Mi"  # a quantity, as the kubelet's string field
    container_log_max_files: int = 5
    resolv_conf: str = "/etc/resolv.conf"  # what dnsPolicy Default (and ClusterFirst without cluster DNS) gives
    nodeagent: NodeAgentConfig = NodeAgentConfig()

    @field_validator("cgroup_driver")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        return None if value is None else _one_of(value, ("cgroupfs", "systemd"))

    @field_validator("cgroup_root")
    @classmethod
    def _absolute_root(cls, value: str) -> str:
        if not value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f'Invalid value: "{value}": must be an absolute cgroup path without ".."')
        return value

    @field_validator("cpu_cfs_quota_period")
    @classmethod
    def _period_range(cls, value: int) -> int:
        if not 1_000_000 <= value <= 1_000_000_000:
            raise ValueError("must be between 1ms and 1s, inclusive")
        return value

    @field_validator("container_log_max_size")
    @classmethod
    def _log_size(cls, value: str) -> str:
        try:
            size = parse_quantity(value).value()
        except ValueError as exc:
            raise ValueError(f'Invalid value: "{value}": {exc}') from None
        if size <= 0:
            raise ValueError(f'Invalid value: "{value}": must be greater than 0')
        return value

    @field_validator("container_log_max_files")
    @classmethod
    def _log_files(cls, value: int) -> int:
        if value <= 1:
            raise ValueError(f"Invalid value: {value}: must be greater than 1")
        return value

    @property
    def node_name(self) -> str:
        return (self.nodeagent.node_name or socket.gethostname()).lower()

    @property
    def pod_logs_path(self) -> str:
        return self.pod_logs_dir or f"{self.nodeagent.state_dir}/logs/pods"

    @property
    def container_log_max_bytes(self) -> int:
        return parse_quantity(self.container_log_max_size).value()

    def swap_behavior(self) -> SwapBehavior:
        return SwapBehavior.LIMITED_SWAP if self.memory_swap.swap_behavior == "LimitedSwap" else SwapBehavior.NO_SWAP

    def plan_settings(self, *, cgroup_version: int, cgroup_driver: CgroupDriverName) -> PlanSettings:
        """The plan's settings on this cgroup version; ConfigError for what the kubelet refuses on it."""
        single_process_oom_kill = self.single_process_oom_kill
        if single_process_oom_kill is None:
            single_process_oom_kill = cgroup_version == 1
        elif not single_process_oom_kill and cgroup_version == 1:
            raise ConfigError("KubeletConfiguration", [FieldError(
                "singleProcessOOMKill", "invalid configuration: singleProcessOOMKill must not be explicitly set "
                                        "to false when using cgroup v1")])
        return PlanSettings(
            cgroup_version=cgroup_version,
            cgroup_driver=cgroup_driver,
            cgroup_root=self.cgroup_root,
            cgroups_per_qos=self.cgroups_per_qos,
            cpu_cfs_quota=self.cpu_cfs_quota,
            cpu_cfs_quota_period_us=self.cpu_cfs_quota_period // 1000,
            pod_pids_limit=self.pod_pids_limit,
            swap_behavior=self.swap_behavior(),
            memory_qos=bool((self.feature_gates or {}).get("MemoryQoS")),
            memory_throttling_factor=self.memory_throttling_factor,
            enforce_node_allocatable="pods" in self.enforce_node_allocatable,
            single_process_oom_kill=single_process_oom_kill,
        )


def parse_config(data: Any, source: str) -> tuple[KubeletConfig, list[FieldError]]:
    """(config, warnings about unknown fields), or ConfigError with every invalid field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [FieldError("", "must be a mapping (a KubeletConfiguration)")])
    try:
        config = KubeletConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [error for _, error in from_validation_error(exc)]) from None
    return config, [
        FieldError(w.path, w.message + " (not used by nodeagent)") for w in find_unknown_fields(config)
    ]


def load_config(path: str | None) -> tuple[KubeletConfig, list[FieldError]]:
    """Read the file at `path`; None means the embedded defaults."""
    if path is None:
        return parse_config({}, "<defaults>")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(path, [FieldError("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(path, [FieldError("", f"invalid YAML: {exc}")]) from None
    return parse_config(data, path)
