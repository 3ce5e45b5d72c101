"""securityContext: the effective fields (container over pod), the kubelet's runAsNonRoot check with its
words, the API server's no_new_privs rules, and the process runtime's setpriv command line."""

from dataclasses import replace

import pytest
import yaml

from nodeagent.agent.security import refuse_unenforceable, security_fields
from nodeagent.api.model import Pod
from nodeagent.errors import RuntimeStartError
from nodeagent.plan.pod import CgroupPlan
from nodeagent.plan.resource_config import ResourceConfig
from nodeagent.runtime.base import ContainerSpec
from nodeagent.runtime.oci_spec import ALL_CAPABILITIES
from nodeagent.runtime.security import refuse_unsupported, setpriv_argv, verify_run_as_non_root
from tests.unit.test_validation import pod, problems, warnings

SPEC = ContainerSpec(
    pod_name="web-node1", pod_namespace="default", pod_uid="u1", name="c", attempt=0, image="busybox",
    command=("sleep", "1"), args=(), env={}, working_dir=None, run_as_user=None, run_as_group=None,
    supplemental_groups=(), mounts=(), cgroup=CgroupPlan("container", "/p/c", {}, "c", None, ResourceConfig()),
    oom_score_adj=None, log_path="/l", hostname="web")
WHERE = '(pod: "web-node1_default(u1)", container: c)'
EVERY = frozenset(ALL_CAPABILITIES)


def refusal(spec: ContainerSpec, image_user: str) -> str:
    with pytest.raises(RuntimeStartError) as caught:
        verify_run_as_non_root(spec, image_user)
    assert caught.value.reason == "CreateContainerConfigError"
    return caught.value.message


def test_run_as_non_root_refuses_root_in_the_kubelets_words() -> None:
    strict = replace(SPEC, run_as_non_root=True)
    assert refusal(strict, "") == f"container has runAsNonRoot and image will run as root {WHERE}"
    assert refusal(strict, "0:5") == f"container has runAsNonRoot and image will run as root {WHERE}"
    assert refusal(strict, "nginx") == ("container has runAsNonRoot and image has non-numeric user (nginx), "
                                        f"cannot verify user is non-root {WHERE}")
    assert refusal(replace(strict, run_as_user=0), "1000") == f"container's runAsUser breaks non-root policy {WHERE}"


def test_run_as_non_root_lets_a_non_root_user_run() -> None:
    strict = replace(SPEC, run_as_non_root=True)
    verify_run_as_non_root(strict, "1000:1000")
    verify_run_as_non_root(replace(strict, run_as_user=1000), "")  # runAsUser decides, not the image
    verify_run_as_non_root(SPEC, "")  # not asked for


def test_the_container_fields_win_over_the_pods() -> None:
    document = yaml.safe_load(pod("""
  securityContext: {runAsUser: 1, runAsGroup: 2, runAsNonRoot: true, supplementalGroups: [7, 8], fsGroup: 9}
  containers:
  - name: c
    image: x
    securityContext: {runAsUser: 3, runAsNonRoot: false, readOnlyRootFilesystem: true,
                      allowPrivilegeEscalation: false, capabilities: {add: [NET_ADMIN], drop: [ALL]}}
"""))
    spec = Pod.model_validate(document).spec
    assert spec.containers is not None
    assert security_fields(spec, spec.containers[0], "/var/lib/nodeagent") == {
        "run_as_user": 3, "run_as_group": 2, "run_as_non_root": False, "supplemental_groups": (7, 8, 9),
        "privileged": False, "read_only_root": True, "capabilities_add": ("NET_ADMIN",),
        "capabilities_drop": ("ALL",), "allow_privilege_escalation": False,
        "seccomp_profile": "Unconfined", "seccomp_localhost": None, "host_pid": False, "host_ipc": False,
        "sysctls": (), "share_process_namespace": False}


@pytest.mark.parametrize(("context", "expected"), [
    ("{privileged: true, allowPrivilegeEscalation: false}",
     "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"),
    ("{capabilities: {add: [CAP_SYS_ADMIN]}, allowPrivilegeEscalation: false}",
     "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"),
])
def test_no_new_privs_that_cannot_hold_is_invalid(context: str, expected: str) -> None:
    found = problems(pod(f"  containers: [{{name: c, image: x, securityContext: {context}}}]\n"))
    assert len(found) == 1 and found[0].startswith("spec.containers[0].securityContext: Invalid value: ")
    assert found[0].endswith(expected)


def test_pod_ids_are_in_range() -> None:
    found = problems(pod("  securityContext: {fsGroup: -1, supplementalGroups: [5, 4294967296]}\n"
                         "  containers: [{name: c, image: x}]\n"))
    assert found == ["spec.securityContext.fsGroup: Invalid value: -1: must be between 0 and 2147483647, inclusive",
                     "spec.securityContext.supplementalGroups[1]: Invalid value: 4294967296: must be between 0 and "
                     "2147483647, inclusive"]


def test_setpriv_gives_the_default_set_and_keeps_the_uid_with_only_run_as_group() -> None:
    argv = setpriv_argv(replace(SPEC, run_as_group=5, supplemental_groups=(6, 7)), EVERY)
    assert argv == ["setpriv", "--regid=5", "--groups=6,7", "--inh-caps=-all",
                    "--bounding-set=-all,+audit_write,+chown,+dac_override,+fowner,+fsetid,+kill,+mknod,"
                    "+net_bind_service,+net_raw,+setfcap,+setgid,+setpcap,+setuid,+sys_chroot", "--"]


def test_setpriv_adds_drops_and_sets_no_new_privs() -> None:
    spec = replace(SPEC, run_as_user=1000, capabilities_drop=("ALL",), capabilities_add=("NET_BIND_SERVICE",),
                   allow_privilege_escalation=False)
    assert setpriv_argv(spec, EVERY) == ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups",
                                         "--inh-caps=-all", "--bounding-set=-all,+net_bind_service",
                                         "--no-new-privs", "--"]
    held = setpriv_argv(replace(spec, capabilities_drop=(), capabilities_add=("SYS_ADMIN",)), {"CAP_CHOWN"})
    assert "--bounding-set=-all,+chown" in held  # none this agent lacks


def test_setpriv_privileged_keeps_every_capability() -> None:
    assert setpriv_argv(replace(SPEC, privileged=True), EVERY) == ["setpriv", "--clear-groups", "--"]


def test_an_unknown_capability_is_refused() -> None:
    with pytest.raises(RuntimeStartError) as caught:
        setpriv_argv(replace(SPEC, capabilities_add=("NET_WIZARD",)), EVERY)
    assert caught.value.reason == "CreateContainerConfigError"
    assert caught.value.message == "securityContext.capabilities.add: unknown capability 'NET_WIZARD'"


@pytest.mark.parametrize(("spec", "expected"), [
    ("  containers: [{name: c, image: x, securityContext: {procMount: Sometimes}}]\n",
     'spec.containers[0].securityContext.procMount: Unsupported value: "Sometimes": supported values: '
     '"Default", "Unmasked"'),
    ("  containers: [{name: c, image: x, securityContext: {procMount: Unmasked}}]\n",
     'spec.containers[0].securityContext.procMount: Invalid value: "Unmasked": `hostUsers` must be false to use '
     "`Unmasked`"),
    ("  securityContext: {fsGroupChangePolicy: Never}\n  containers: [{name: c, image: x}]\n",
     'spec.securityContext.fsGroupChangePolicy: Unsupported value: "Never": supported values: "Always", '
     '"OnRootMismatch"'),
])
def test_proc_mount_and_fs_group_change_policy_values(spec: str, expected: str) -> None:
    assert problems(pod(spec)) == [expected]


def test_default_proc_mount_is_valid_and_no_unknown_field() -> None:
    text = pod("  securityContext: {fsGroupChangePolicy: OnRootMismatch, seLinuxOptions: {level: 's0:c1'}}\n"
               "  containers: [{name: c, image: x, securityContext: {procMount: Default, windowsOptions: {}}}]\n")
    assert problems(text) == [] and warnings(text) == []


@pytest.mark.parametrize(("spec", "expected"), [
    ("  securityContext: {seLinuxOptions: {level: 's0:c1'}}\n  containers: [{name: c, image: x}]\n",
     "spec.securityContext.seLinuxOptions: nodeagent applies no SELinux labels"),
    ("  containers: [{name: c, image: x, securityContext: {windowsOptions: {runAsUserName: admin}}}]\n",
     "securityContext.windowsOptions: Windows options cannot apply"),
])
def test_what_cannot_be_honoured_is_refused_when_the_container_would_start(spec: str, expected: str) -> None:
    parsed = Pod.model_validate(yaml.safe_load(pod(spec)))
    assert parsed.spec.containers is not None
    with pytest.raises(RuntimeStartError) as caught:
        refuse_unenforceable(parsed, parsed.spec.containers[0], lambda: False)
    assert caught.value.reason == "CreateContainerConfigError"
    assert caught.value.message.startswith(expected)


def test_empty_options_ask_for_nothing() -> None:
    parsed = Pod.model_validate(yaml.safe_load(pod(
        "  containers: [{name: c, image: x, securityContext: {seLinuxOptions: {}, windowsOptions: {}}}]\n")))
    assert parsed.spec.containers is not None
    refuse_unenforceable(parsed, parsed.spec.containers[0], lambda: False)


@pytest.mark.parametrize(("spec", "enabled", "expected"), [
    ("  securityContext: {appArmorProfile: {type: RuntimeDefault}}\n  containers: [{name: c, image: x}]\n", False,
     "Cannot enforce AppArmor: AppArmor is not enabled on the host"),
    ("  containers: [{name: c, image: x, securityContext: {appArmorProfile: {type: Localhost, "
     "localhostProfile: p}}}]\n", True,
     "appArmorProfile Localhost: nodeagent applies no AppArmor profiles yet (on any runtime)"),
])
def test_apparmor_is_refused_as_the_kubelet_refuses_it(spec: str, enabled: bool, expected: str) -> None:
    parsed = Pod.model_validate(yaml.safe_load(pod(spec)))
    assert parsed.spec.containers is not None
    with pytest.raises(RuntimeStartError) as caught:
        refuse_unenforceable(parsed, parsed.spec.containers[0], lambda: enabled)
    assert caught.value.message == expected


def test_the_deprecated_apparmor_annotation_is_still_read() -> None:
    document = yaml.safe_load(pod("  containers: [{name: c, image: x}, {name: d, image: x}]\n"))
    document["metadata"]["annotations"] = {"container.apparmor.security.beta.kubernetes.io/c": "runtime/default",
                                           "container.apparmor.security.beta.kubernetes.io/d": "unconfined"}
    parsed = Pod.model_validate(document)
    assert parsed.spec.containers is not None
    with pytest.raises(RuntimeStartError):
        refuse_unenforceable(parsed, parsed.spec.containers[0], lambda: False)
    refuse_unenforceable(parsed, parsed.spec.containers[1], lambda: False)  # unconfined: nothing to enforce


def test_seccomp_profile_the_containers_over_the_pods() -> None:
    spec = Pod.model_validate(yaml.safe_load(pod("""
  securityContext: {seccompProfile: {type: RuntimeDefault}}
  containers:
  - {name: a, image: x}
  - {name: b, image: x, securityContext: {seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}}}
  - {name: c, image: x, securityContext: {seccompProfile: {type: Unconfined}}}
"""))).spec
    assert spec.containers is not None
    found = [security_fields(spec, c, "/var/lib/nodeagent") for c in spec.containers]
    assert [(f["seccomp_profile"], f["seccomp_localhost"]) for f in found] == [
        ("RuntimeDefault", None), ("Localhost", "/var/lib/nodeagent/seccomp/profiles/audit.json"), ("Unconfined", None)]


def test_the_process_runtime_refuses_a_seccomp_filter() -> None:
    refuse_unsupported(SPEC)
    with pytest.raises(RuntimeStartError) as caught:
        refuse_unsupported(replace(SPEC, seccomp_profile="RuntimeDefault"))
    assert caught.value.message.startswith("securityContext.seccompProfile: RuntimeDefault cannot be applied by the "
                                           "process runtime")
