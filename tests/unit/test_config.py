"""The configuration file: kubelet names and defaults, nodeagent's own key, unknown and invalid fields."""

import pytest

from nodeagent.config import load_config, parse_config, parse_duration_ns
from nodeagent.errors import ConfigError
from nodeagent.images.budget import UnpackLimits
from nodeagent.plan.settings import CgroupDriverName, SwapBehavior


def test_kubelet_defaults() -> None:
    config, warnings = parse_config({}, "t")
    assert warnings == []
    assert config.static_pod_path == "/etc/kubernetes/manifests"
    assert config.file_check_frequency == 20 * 10**9
    assert config.http_check_frequency == 20 * 10**9
    assert (config.cgroup_root, config.cgroups_per_qos, config.fail_swap_on, config.cpu_cfs_quota) == ("/", True, True, True)
    assert config.cpu_cfs_quota_period == 100 * 10**6
    assert (config.pod_pids_limit, config.max_pods) == (-1, 110)
    assert config.enforce_node_allocatable == ["pods"]
    assert config.swap_behavior() is SwapBehavior.NO_SWAP
    assert config.nodeagent.runtime == "process"
    assert config.cgroup_driver is None
    assert (config.container_log_max_size, config.container_log_max_bytes, config.container_log_max_files) == (
        "10Mi", 10 * 2**20, 5)


def test_an_existing_kubelet_config_works() -> None:
    data = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "staticPodPath": "/srv/manifests", "cgroupDriver": "systemd", "memorySwap": {"swapBehavior": "LimitedSwap"},
        "systemReserved": {"cpu": "500m", "memory": "1Gi"}, "evictionHard": {"memory.available": "100Mi"},
        "featureGates": {"MemoryQoS": True}, "cpuCFSQuotaPeriod": "50ms", "clusterDNS": ["10.96.0.10"],
    }
    config, warnings = parse_config(data, "t")
    settings = config.plan_settings(cgroup_version=2, cgroup_driver=CgroupDriverName.SYSTEMD)
    assert settings.swap_behavior is SwapBehavior.LIMITED_SWAP
    assert settings.memory_qos is True
    assert settings.cpu_cfs_quota_period_us == 50_000
    assert [str(w) for w in warnings] == ['clusterDNS: unknown field "clusterDNS" (not used by nodeagent)']


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cgroupDriver": "sysd"}, 'cgroupDriver: Unsupported value: "sysd"'),
        ({"podPidsLimit": "100"}, 'podPidsLimit: Invalid value: "100": must be an integer'),
        ({"fileCheckFrequency": "soon"}, "fileCheckFrequency: invalid duration"),
        ({"cpuCFSQuotaPeriod": "2s"}, "cpuCFSQuotaPeriod: must be between 1ms and 1s"),
        ({"cgroupRoot": "relative"}, 'cgroupRoot: Invalid value: "relative"'),
        ({"systemReserved": {"memory": "lots"}}, "systemReserved.memory: quantities must match"),
        ({"nodeagent": {"runtime": "docker"}}, 'nodeagent.runtime: Unsupported value: "docker"'),
        ({"nodeagent": {"nodeName": "Bad_Name"}}, 'nodeagent.nodeName: Invalid value: "Bad_Name"'),
        ({"memorySwap": {"swapBehavior": "Unlimited"}}, 'memorySwap.swapBehavior: Unsupported value: "Unlimited"'),
        ({"containerLogMaxSize": "lots"}, 'containerLogMaxSize: Invalid value: "lots"'),
        ({"containerLogMaxSize": "0"}, 'containerLogMaxSize: Invalid value: "0": must be greater than 0'),
        ({"containerLogMaxFiles": 1}, "containerLogMaxFiles: Invalid value: 1: must be greater than 1"),
    ],
)
def test_invalid_values_name_their_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "cfg.yaml")
    assert any(str(e).startswith(message) for e in caught.value.errors), caught.value.errors


def test_every_invalid_field_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"cgroupDriver": "x", "maxPods": "many"}, "cfg.yaml")
    assert [e.path for e in caught.value.errors] == ["cgroupDriver", "maxPods"]


@pytest.mark.parametrize(("text", "ns"), [("20s", 20 * 10**9), ("100ms", 10**8), ("1m30s", 90 * 10**9),
                                           ("1.5h", 5400 * 10**9), ("0", 0), ("250us", 250_000)])
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


def test_shipped_example_config_is_valid() -> None:
    config, warnings = load_config("config/nodeagent.yaml")
    assert warnings == []
    assert config.nodeagent.runtime == "process"
    shipped, defaults = config.model_dump(), load_config(None)[0].model_dump()
    differing = {key for key in shipped if shipped[key] != defaults[key]}
    assert differing == {"cgroupDriver", "memorySwap"}  # it says "every value below is the default"
    assert shipped["memorySwap"] == {"swapBehavior": "NoSwap"}  # what an unset swapBehavior means


def test_unreadable_config(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/nodeagent.yaml")


def test_image_unpack_limits_are_quantities_with_defaults() -> None:
    config, _ = parse_config({}, "t")
    assert config.nodeagent.unpack_limits() == UnpackLimits(layer_bytes=4 << 30, pull_bytes=8 << 30)
    config, _ = parse_config({"nodeagent": {"imageMaxLayerSize": "512Mi", "imageMaxPullSize": "2G"}}, "t")
    assert config.nodeagent.unpack_limits() == UnpackLimits(layer_bytes=512 << 20, pull_bytes=2 * 10**9)
    with pytest.raises(ConfigError) as raised:
        parse_config({"nodeagent": {"imageMaxLayerSize": "0", "imageMaxPullSize": "lots"}}, "t")
    message = str(raised.value)
    assert 'nodeagent.imageMaxLayerSize: Invalid value: "0": must be greater than zero' in message
    assert "nodeagent.imageMaxPullSize" in message
