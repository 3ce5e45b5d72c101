"""`nodeagent plan` as a user runs it: tables, JSON, YAML, settings from flags and files, bad manifests."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nodeagent.cli.main import cli
from tests.conftest import EXAMPLES

MiB = 1 << 20
FIXED_NODE = ["--node-cpu", "4", "--node-memory", "16Gi", "--node-swap", "4Gi", "--node-hugepages", "",
              "--node-name", "node1"]


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_table_per_cgroup() -> None:
    code, out, _ = run("plan", str(EXAMPLES / "memory-demo-2.yaml"), "--cgroup-version", "1",
                       "--cgroup-driver", "cgroupfs", *FIXED_NODE)
    assert code == 0
    assert "Pod:      mem-example/memory-demo-2-node1" in out
    assert "QoS:      Burstable" in out
    assert "Cgroups:  v1, cgroupfs driver" in out
    assert "container memory-demo-2-ctr: /kubepods/burstable/pod" in out
    assert f"memory.limit_in_bytes        {100 * MiB}" in out
    assert "oom_score_adj                997" in out


@pytest.mark.parametrize(("version", "driver"), [("1", "cgroupfs"), ("1", "systemd"), ("2", "cgroupfs"), ("2", "systemd")])
def test_json_for_every_version_and_driver(version: str, driver: str) -> None:
    code, out, _ = run("plan", str(EXAMPLES / "qos-guaranteed.yaml"), "--cgroup-version", version,
                       "--cgroup-driver", driver, "-o", "json", *FIXED_NODE)
    assert code == 0
    data = json.loads(out)
    assert data["pod"]["qosClass"] == "Guaranteed"
    assert (data["cgroupVersion"], data["cgroupDriver"]) == (int(version), driver)
    pod_files = data["cgroups"][0]["files"]
    if version == "1":
        assert pod_files == {"cpu.shares": "716", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "70000",
                             "memory.limit_in_bytes": str(200 * MiB)}
    else:
        assert pod_files == {"cpu.weight": "28", "cpu.max": "70000 100000", "memory.max": str(200 * MiB)}
    expected_path = "/kubepods.slice/kubepods-pod" if driver == "systemd" else "/kubepods/pod"
    assert data["cgroups"][0]["path"].startswith(expected_path)
    assert data["cgroups"][1]["oomScoreAdj"] == -997


def test_yaml_output() -> None:
    code, out, _ = run("plan", str(EXAMPLES / "qos-besteffort.yaml"), "--cgroup-version", "2", "-o", "yaml",
                       *FIXED_NODE)
    assert code == 0
    assert yaml.safe_load(out)["cgroups"][1]["oomScoreAdj"] == 1000


def test_every_example_plans() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        code, out, err = run("plan", str(path), "-o", "json", *FIXED_NODE)
        assert code == 0, (path, err)
        assert json.loads(out)["pod"]["qosClass"] in ("Guaranteed", "Burstable", "BestEffort")


def test_flags_for_swap_and_root() -> None:
    code, out, _ = run("plan", str(EXAMPLES / "memory-demo.yaml"), "--cgroup-version", "2",
                       "--swap-behavior", "LimitedSwap", "--cgroup-root", "/custom", "-o", "json", *FIXED_NODE)
    assert code == 0
    data = json.loads(out)
    assert data["cgroups"][0]["path"].startswith("/custom/kubepods/burstable/pod")
    assert data["cgroups"][1]["files"]["memory.swap.max"] == str(int(100 * MiB / (16 << 30) * (4 << 30)))


def test_settings_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "kubelet.yaml"
    config.write_text("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                      "cgroupDriver: systemd\npodPidsLimit: 256\ncpuCFSQuotaPeriod: 50ms\n"
                      "nodeagent: {nodeName: edge-7}\n")
    code, out, _ = run("plan", str(EXAMPLES / "qos-guaranteed.yaml"), "--config", str(config),
                       "--cgroup-version", "2", "-o", "json", "--node-memory", "16Gi", "--node-cpu", "4")
    assert code == 0
    data = json.loads(out)
    assert data["pod"]["name"] == "qos-demo-edge-7"
    assert data["cgroupDriver"] == "systemd"
    assert data["cgroups"][0]["files"]["pids.max"] == "256"
    assert data["cgroups"][1]["files"]["cpu.max"] == "35000 50000"


def test_invalid_config_value_names_its_field(tmp_path: Path) -> None:
    config = tmp_path / "kubelet.yaml"
    config.write_text("cgroupDriver: systemdd\n")
    code, _, err = run("plan", str(EXAMPLES / "qos-guaranteed.yaml"), "--config", str(config))
    assert code == 1
    assert err.strip() == (f'error: {config}: cgroupDriver: Unsupported value: "systemdd": supported values: '
                           '"cgroupfs", "systemd"')


def test_bad_manifest_lists_every_error_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"
                   "  - {name: c, image: x, resources: {limits: {memory: 1Q}}}\n  - {name: c}\n")
    code, out, err = run("plan", str(bad))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"error: {bad}: spec.containers[0].resources.limits.memory: quantities must match the regular "
        "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        f'error: {bad}: spec.containers[1].name: Duplicate value: "c"',
        f"error: {bad}: spec.containers[1].image: Required value",
    ]
    assert "Traceback" not in err


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(256)))
    code, _, err = run("plan", str(garbage))
    assert (code, err.strip()) == (1, f"error: {garbage}: binary data, not a YAML or JSON manifest")
    code, _, err = run("plan", str(tmp_path / "missing.yaml"))
    assert code == 1 and "No such file or directory" in err


def test_warnings_go_to_stderr() -> None:
    text = "kind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: x, resource: {}}]\n"
    code, out, err = run("plan", "-", "-o", "json", *FIXED_NODE, stdin=text)
    assert code == 0
    json.loads(out)
    assert err.strip() == ('warning: <stdin>: spec.containers[0].resource: unknown field "resource" '
                           '(did you mean "resources"?)')


def test_console_entry_points() -> None:
    for command in ([sys.executable, "-m", "nodeagent"], [str(Path(sys.executable).parent / "nodeagent")]):
        done = subprocess.run([*command, "plan", str(EXAMPLES / "qos-guaranteed.yaml"), "-o", "json"],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["pod"]["qosClass"] == "Guaranteed"


def test_hugetlb_files_for_the_node_hugepages_given() -> None:
    manifest = ("kind: Pod\nmetadata: {name: h}\nspec:\n  containers:\n  - {name: c, image: x, resources: "
                "{limits: {hugepages-2Mi: 4Mi, memory: 64Mi}}}\n")
    code, out, err = run("plan", "-", "--cgroup-version", "1", "--cgroup-driver", "cgroupfs", *FIXED_NODE[:-4],
                         "--node-hugepages", "2Mi=1Gi,1Gi=0", "--node-name", "node1", "-o", "json", stdin=manifest)
    assert code == 0, err
    cgroups = json.loads(out)["cgroups"]
    for cgroup in cgroups:
        assert cgroup["files"]["hugetlb.2MB.limit_in_bytes"] == str(4 * MiB)
        assert cgroup["files"]["hugetlb.1GB.limit_in_bytes"] == "0"


def test_pod_level_limits_show_on_the_pod_cgroup() -> None:
    manifest = ("kind: Pod\nmetadata: {name: p}\nspec:\n  resources: {limits: {cpu: 500m, memory: 64Mi}}\n"
                "  containers:\n  - {name: c, image: x}\n")
    code, out, err = run("plan", "-", "--cgroup-version", "2", "--cgroup-driver", "cgroupfs", *FIXED_NODE,
                         "-o", "json", stdin=manifest)
    assert code == 0, err
    plan = json.loads(out)
    assert plan["pod"]["qosClass"] == "Guaranteed"
    assert plan["cgroups"][0]["level"] == "pod"
    assert plan["cgroups"][0]["files"]["memory.max"] == str(64 * MiB)
    assert plan["cgroups"][0]["files"]["cpu.max"] == "50000 100000"
