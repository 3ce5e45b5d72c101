"""Pod status as the kubelet derives it: getPhase, the conditions, container statuses and the v1 Pod JSON."""

import dataclasses
import datetime as dt
import json

import pytest

from nodeagent.agent.records import ContainerRecord, State, Termination
from nodeagent.agent.status import PodFacts, conditions, container_status, pod_json, pod_phase
from tests.conftest import example, load_pod

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def exit_(code: int, reason: str | None = None, *, started: int = 0, finished: int = 5,
          cid: str | None = "cid-old", signal: int | None = None, message: str | None = None) -> Termination:
    if reason is None:
        reason = "Completed" if code == 0 else "Error"
    return Termination(exit_code=code, reason=reason, started_at=at(started), finished_at=at(finished),
                       container_id=cid, signal=signal, message=message)


def waiting(name: str = "c", reason: str = "ContainerCreating", *, last: Termination | None = None,
            init: bool = False, restarts: int = 0, message: str | None = None) -> ContainerRecord:
    return ContainerRecord(name, "img", init=init, state=State.WAITING, reason=reason, message=message,
                           last_termination=last, restart_count=restarts)


def running(name: str = "c", *, ready: bool = True, last: Termination | None = None, init: bool = False,
            restarts: int = 0) -> ContainerRecord:
    return ContainerRecord(name, "img", init=init, state=State.RUNNING, reason=None, started_at=at(10),
                           container_id="cid-now", pid=4242, restart_count=restarts, last_termination=last,
                           ready=ready)


def stopped(code: int, name: str = "c", *, init: bool = False, last: Termination | None = None,
            reason: str | None = None) -> ContainerRecord:
    return ContainerRecord(name, "img", init=init, state=State.TERMINATED, reason=None,
                           terminated=exit_(code, reason, cid="cid-now"), last_termination=last)


# -- pod_phase: kubelet getPhase ---------------------------------------------------------------------

def sidecar(record: ContainerRecord) -> ContainerRecord:
    return dataclasses.replace(record, init=True, sidecar=True)


PHASES = [
    # (restart policy, init records, app records, phase)
    ("Always", [], [waiting()], "Pending"),
    ("Always", [], [running()], "Running"),
    ("Always", [], [running("a"), waiting("b")], "Pending"),
    ("Always", [], [running("a", ready=False)], "Running"),
    ("Always", [], [stopped(0)], "Running"),
    ("Always", [], [stopped(1)], "Running"),
    ("Always", [], [waiting(reason="CrashLoopBackOff", last=exit_(1))], "Running"),
    ("OnFailure", [], [stopped(0)], "Succeeded"),
    ("OnFailure", [], [stopped(1)], "Running"),
    ("OnFailure", [], [stopped(0, "a"), stopped(0, "b")], "Succeeded"),
    ("OnFailure", [], [waiting(reason="CrashLoopBackOff", last=exit_(1))], "Running"),
    ("Never", [], [stopped(0)], "Succeeded"),
    ("Never", [], [stopped(1)], "Failed"),
    ("Never", [], [stopped(137, reason="OOMKilled")], "Failed"),
    ("Never", [], [stopped(0, "a"), stopped(2, "b")], "Failed"),
    ("Never", [], [running("a"), stopped(2, "b")], "Running"),
    ("Never", [], [waiting(last=exit_(0))], "Failed"),  # kubelet quirk: waiting after an exit counts as stopped, never as succeeded
    ("Never", [], [], "Pending"),
    ("Always", [running("i", init=True)], [waiting("a", "PodInitializing")], "Pending"),
    ("Always", [waiting("i", "PodInitializing", init=True)], [waiting("a", "PodInitializing")], "Pending"),
    ("Always", [stopped(0, "i", init=True)], [running("a")], "Running"),
    ("Always", [stopped(0, "i1", init=True), running("i2", init=True)], [waiting("a", "PodInitializing")], "Pending"),
    ("Never", [stopped(1, "i", init=True)], [waiting("a", "PodInitializing")], "Failed"),
    ("OnFailure", [stopped(1, "i", init=True)], [waiting("a", "PodInitializing")], "Pending"),
    ("Always", [stopped(1, "i", init=True)], [waiting("a", "PodInitializing")], "Pending"),
    ("Never", [waiting("i", "CrashLoopBackOff", init=True, last=exit_(1))], [waiting("a", "PodInitializing")], "Failed"),
    ("OnFailure", [waiting("i", "CrashLoopBackOff", init=True, last=exit_(1))], [waiting("a", "PodInitializing")], "Pending"),
    ("Always", [waiting("i", "ContainerCreating", init=True, last=exit_(0))], [running("a")], "Running"),
    ("OnFailure", [stopped(0, "i", init=True)], [stopped(0, "a")], "Succeeded"),
    ("Never", [stopped(0, "i", init=True)], [stopped(3, "a")], "Failed"),
    ("Always", [sidecar(waiting("s", "PodInitializing"))], [waiting("a", "PodInitializing")], "Pending"),
    ("Always", [sidecar(running("s"))], [waiting("a")], "Pending"),
    ("Always", [sidecar(running("s"))], [running("a")], "Running"),
    # a sidecar backing off once the app runs, or stopped after the app is done, moves nothing
    ("Always", [sidecar(waiting("s", "CrashLoopBackOff", last=exit_(1)))], [running("a")], "Running"),
    ("Never", [sidecar(stopped(143, "s"))], [stopped(0, "a")], "Succeeded"),
    ("Never", [sidecar(running("s"))], [stopped(0, "a")], "Succeeded"),
    ("Never", [sidecar(running("s"))], [stopped(2, "a")], "Failed"),
]
PHASE_IDS = [
    "app-waiting", "app-running", "one-running-one-waiting", "running-unready-is-running", "always-exit0-restarting",
    "always-exit1-restarting", "always-crashloop", "onfailure-exit0-succeeded", "onfailure-exit1-restarting",
    "onfailure-all-exit0", "onfailure-crashloop", "never-exit0-succeeded", "never-exit1-failed", "never-oomkilled-failed",
    "never-one-failure-fails", "never-one-still-running", "never-waiting-after-exit0-quirk", "no-containers-pending",
    "init-running", "init-waiting", "init-done-app-running", "second-init-running", "never-init-failed",
    "onfailure-init-failed-retrying", "always-init-failed-retrying", "never-init-crashloop", "onfailure-init-crashloop",
    "init-waiting-after-exit0-neither-pending-nor-failed", "onfailure-init-and-app-done", "never-init-done-app-failed",
    "sidecar-not-run-pending", "sidecar-running-app-waiting", "sidecar-and-app-running", "sidecar-backing-off-running",
    "sidecar-stopped-app-done-succeeded", "sidecar-running-app-done-succeeded", "sidecar-running-app-failed",
]


@pytest.mark.parametrize(("policy", "init", "app", "phase"), PHASES, ids=PHASE_IDS)
def test_pod_phase(policy: str, init: list[ContainerRecord], app: list[ContainerRecord], phase: str) -> None:
    assert pod_phase(policy, init, app) == phase


# -- conditions ---------------------------------------------------------------------------------------

def test_conditions_all_ready() -> None:
    assert conditions([stopped(0, "i", init=True)], [running("a"), running("b")], "Running", frozenset()) == [
        ("Initialized", True, None, None),
        ("Ready", True, None, None),
        ("ContainersReady", True, None, None),
        ("PodScheduled", True, None, None),
    ]


def test_conditions_incomplete_init_containers_are_listed_go_style() -> None:
    init = [stopped(0, "first", init=True), stopped(1, "second", init=True), running("third", init=True),
            waiting("fourth", "PodInitializing", init=True)]
    found = conditions(init, [waiting("a", "PodInitializing")], "Pending", frozenset())
    assert found[0] == ("Initialized", False, "ContainersNotInitialized",
                        "containers with incomplete status: [second third fourth]")


def test_conditions_unready_containers_are_listed() -> None:
    found = conditions([], [running("web", ready=False), running("ok"), waiting("side")], "Pending", frozenset())
    expected = (False, "ContainersNotReady", "containers with unready status: [web side]")
    assert found[1] == ("Ready", *expected)
    assert found[2] == ("ContainersReady", *expected)
    assert found[0] == ("Initialized", True, None, None)
    assert found[3] == ("PodScheduled", True, None, None)


def test_conditions_succeeded_pod_is_not_ready_because_completed() -> None:
    found = conditions([], [stopped(0)], "Succeeded", frozenset())
    assert found[1] == ("Ready", False, "PodCompleted", None)
    assert found[2] == ("ContainersReady", False, "PodCompleted", None)


def test_conditions_failed_pod_is_not_ready_because_failed() -> None:
    found = conditions([], [stopped(1)], "Failed", frozenset())
    assert found[1] == ("Ready", False, "PodFailed", None)
    assert found[2] == ("ContainersReady", False, "PodFailed", None)


def test_conditions_succeeded_pod_is_initialized_because_completed() -> None:
    found = conditions([stopped(0, "i", init=True)], [stopped(0)], "Succeeded", frozenset())
    assert found[0] == ("Initialized", True, "PodCompleted", None)


# -- container_status -----------------------------------------------------------------------------------

def test_container_status_waiting_without_history() -> None:
    assert container_status(waiting("web", "ContainerCreating"), frozenset()) == {
        "name": "web", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
        "ready": False, "restartCount": 0, "image": "img", "imageID": "", "started": False,
    }


def test_container_status_crash_loop_has_message_last_state_and_restarts() -> None:
    record = waiting("web", "CrashLoopBackOff", message="back-off 20s restarting failed container=web pod=p_ns(u)",
                     last=exit_(1, started=60, finished=70, cid="cid-1"), restarts=2)
    assert container_status(record, frozenset()) == {
        "name": "web",
        "state": {"waiting": {"reason": "CrashLoopBackOff",
                              "message": "back-off 20s restarting failed container=web pod=p_ns(u)"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2024-05-01T12:01:00Z",
                                     "finishedAt": "2024-05-01T12:01:10Z", "containerID": "cid-1"}},
        "ready": False, "restartCount": 2, "image": "img", "imageID": "", "started": False,
    }


def test_container_status_waiting_without_reason_is_an_empty_waiting() -> None:
    record = ContainerRecord("c", "img", init=False, reason=None)
    assert container_status(record, frozenset())["state"] == {"waiting": {}}


def test_container_status_running() -> None:
    record = running("web", last=exit_(137, "OOMKilled", signal=9, cid="cid-0"), restarts=1)
    assert container_status(record, frozenset({"web"})) == {
        "name": "web",
        "state": {"running": {"startedAt": "2024-05-01T12:00:10Z"}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "signal": 9,
                                     "startedAt": "2024-05-01T12:00:00Z", "finishedAt": "2024-05-01T12:00:05Z",
                                     "containerID": "cid-0"}},
        "ready": True, "restartCount": 1, "image": "img", "imageID": "", "containerID": "cid-now", "started": True,
    }


def test_container_status_running_but_not_ready_is_started() -> None:
    record = running(ready=False)
    status = container_status(record, frozenset({record.name}))
    assert (status["ready"], status["started"]) == (False, True)


def test_container_status_running_before_its_startup_probe_passed_is_not_started() -> None:
    """The kubelet's started: true once the startupProbe has passed (at once without one), not as it runs."""
    status = container_status(running("web"), frozenset())
    assert "running" in status["state"] and status["started"] is False


def test_a_sidecar_is_initialized_once_its_startup_probe_passed() -> None:
    sidecar = dataclasses.replace(running("side", init=True), sidecar=True)
    app = [waiting("a", "PodInitializing")]
    assert conditions([sidecar], app, "Pending", frozenset())[0] == (
        "Initialized", False, "ContainersNotInitialized", "containers with incomplete status: [side]")
    assert conditions([sidecar], app, "Pending", frozenset({"side"}))[0] == ("Initialized", True, None, None)


def test_container_status_terminated() -> None:
    record = ContainerRecord("job", "img", init=False, state=State.TERMINATED, reason=None, container_id="cid-9",
                             terminated=exit_(3, "Error", started=1, finished=61, cid="cid-9", message="boom"))
    assert container_status(record, frozenset()) == {
        "name": "job",
        "state": {"terminated": {"exitCode": 3, "reason": "Error", "message": "boom",
                                 "startedAt": "2024-05-01T12:00:01Z", "finishedAt": "2024-05-01T12:01:01Z",
                                 "containerID": "cid-9"}},
        "lastState": {}, "ready": False, "restartCount": 0, "image": "img", "imageID": "",
        "containerID": "cid-9", "started": False,
    }


def test_container_status_terminated_that_never_started_has_null_started_at() -> None:
    termination = Termination(exit_code=128, reason="Error", started_at=None, finished_at=T0, container_id=None)
    record = ContainerRecord("c", "img", init=False, state=State.TERMINATED, reason=None, terminated=termination)
    assert container_status(record, frozenset())["state"] == {
        "terminated": {"exitCode": 128, "reason": "Error", "startedAt": None, "finishedAt": "2024-05-01T12:00:00Z"}}


def test_container_status_is_json() -> None:
    record = running("web", last=exit_(1))
    assert json.loads(json.dumps(container_status(record, frozenset()))) == container_status(record, frozenset())


# -- pod_json -------------------------------------------------------------------------------------------

FACTS = PodFacts(created_at=T0, host_ip="192.0.2.10", pod_ip="192.0.2.10")


def test_pod_json_guaranteed_running() -> None:
    pod = load_pod(example("qos-guaranteed.yaml"))
    facts = PodFacts(created_at=T0, host_ip="192.0.2.10", pod_ip="192.0.2.10", start_time=at(1),
                     transitions={"Ready": at(12), "ContainersReady": at(12)})
    out = pod_json(pod, [running("qos-demo-ctr")], facts)
    assert out["apiVersion"] == "v1"
    assert out["kind"] == "Pod"
    assert out["metadata"] == {
        "name": "qos-demo-node1", "namespace": "qos-example", "uid": pod.uid,
        "annotations": {"kubernetes.io/config.hash": pod.config_hash, "kubernetes.io/config.source": "file",
                        "nodeagent/config.origin": "/m/pod.yaml"},
        "creationTimestamp": "2024-05-01T12:00:00Z",
    }
    status = out["status"]
    assert status["phase"] == "Running"
    assert status["qosClass"] == "Guaranteed"
    assert status["hostIP"] == "192.0.2.10"
    assert status["hostIPs"] == [{"ip": "192.0.2.10"}]
    assert status["podIP"] == "192.0.2.10"
    assert status["podIPs"] == [{"ip": "192.0.2.10"}]
    assert status["startTime"] == "2024-05-01T12:00:01Z"
    assert "initContainerStatuses" not in status
    assert "reason" not in status and "message" not in status
    assert [c["name"] for c in status["containerStatuses"]] == ["qos-demo-ctr"]
    assert status["conditions"] == [
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2024-05-01T12:00:00Z"},
        {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2024-05-01T12:00:12Z"},
        {"type": "ContainersReady", "status": "True", "lastProbeTime": None,
         "lastTransitionTime": "2024-05-01T12:00:12Z"},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2024-05-01T12:00:00Z"},
    ]
    assert out["spec"]["nodeName"] == "node1"
    assert out["spec"]["containers"][0]["resources"] == {"limits": {"memory": "200Mi", "cpu": "700m"},
                                                         "requests": {"memory": "200Mi", "cpu": "700m"}}
    json.dumps(out)  # serialisable as it is


def test_pod_json_before_start_has_no_pod_ip_and_no_deletion() -> None:
    out = pod_json(load_pod(example("qos-besteffort.yaml")), [waiting("qos-demo-3-ctr")], FACTS)
    assert out["status"]["phase"] == "Pending"
    assert out["status"]["qosClass"] == "BestEffort"
    assert "podIP" not in out["status"] and "startTime" not in out["status"]
    assert out["status"]["hostIP"] == "192.0.2.10"
    assert "deletionTimestamp" not in out["metadata"]
    assert "deletionGracePeriodSeconds" not in out["metadata"]


def test_pod_json_terminating_has_deletion_timestamp_and_grace() -> None:
    pod = load_pod("kind: Pod\nmetadata: {name: p}\nspec:\n  terminationGracePeriodSeconds: 45\n"
                   "  containers: [{name: c, image: x}]\n")
    facts = PodFacts(created_at=T0, host_ip="h", pod_ip="h", start_time=T0, terminating_since=at(300))
    metadata = pod_json(pod, [running("c")], facts)["metadata"]
    assert metadata["deletionTimestamp"] == "2024-05-01T12:05:00Z"
    assert metadata["deletionGracePeriodSeconds"] == 45


def test_pod_json_with_init_containers_lists_them_separately() -> None:
    pod = load_pod(example("init-demo.yaml"))
    records = [stopped(0, "install", init=True), running("nginx")]
    status = pod_json(pod, records, FACTS)["status"]
    assert [c["name"] for c in status["initContainerStatuses"]] == ["install"]
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert [c["name"] for c in status["containerStatuses"]] == ["nginx"]
    assert status["phase"] == "Running"


def test_pod_json_phase_follows_the_restart_policy_of_the_spec() -> None:
    pod = load_pod("kind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Never\n  containers: [{name: c, image: x}]\n")
    out = pod_json(pod, [stopped(1, "c")], FACTS)
    assert out["status"]["phase"] == "Failed"


def test_pod_json_pod_level_reason_and_message() -> None:
    facts = PodFacts(created_at=T0, host_ip="h", pod_ip="h", reason="OutOfmemory",
                     message="Node didn't have enough resource: memory")
    status = pod_json(load_pod(example("qos-burstable.yaml")), [waiting("qos-demo-2-ctr")], facts)["status"]
    assert (status["reason"], status["message"]) == ("OutOfmemory", "Node didn't have enough resource: memory")
    assert status["qosClass"] == "Burstable"


def test_pod_json_leaves_unknown_manifest_fields_out() -> None:
    pod = load_pod("apiVersion: v1\nkind: Pod\nmetadata: {name: web, colour: blue}\nspec:\n  bogus: 1\n"
                   "  containers: [{name: c, image: nginx, resource: {limits: {cpu: '1'}}, extra: {a: 1}}]\n")
    out = pod_json(pod, [running("c")], FACTS)
    assert "colour" not in out["metadata"]
    assert "bogus" not in out["spec"]
    container = out["spec"]["containers"][0]
    assert "resource" not in container and "extra" not in container
    assert container["name"] == "c" and container["image"] == "nginx"
    assert "colour" not in json.dumps(out) and "bogus" not in json.dumps(out)


def test_pod_json_keeps_labels() -> None:
    pod = load_pod(example("static-web.yaml"))
    out = pod_json(pod, [running("web")], FACTS)
    assert out["metadata"]["labels"] == {"role": "myrole"}
    assert out["metadata"]["name"] == "static-web-node1"



def test_conditions_count_sidecars_in_readiness_and_initialization() -> None:
    init = [stopped(0, "setup", init=True), sidecar(running("proxy", ready=False))]
    found = {kind: (ok, message) for kind, ok, _, message in conditions(init, [running("app")], "Running",
                                                                             frozenset({"proxy"}))}
    assert found["Initialized"] == (True, None)  # started: it does not hold initialization back
    assert found["Ready"] == (False, "containers with unready status: [proxy]")
    waiting_sidecar = [sidecar(waiting("proxy", "PodInitializing"))]
    found = {kind: (ok, message) for kind, ok, _, message in
             conditions(waiting_sidecar, [waiting("app", "PodInitializing")], "Pending", frozenset())}
    assert found["Initialized"] == (False, "containers with incomplete status: [proxy]")
