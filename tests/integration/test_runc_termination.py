"""Issue 16's termination fields on the runc runtime (root): termination messages in image containers, the
image's STOPSIGNAL under the container's lifecycle.stopSignal, activeDeadlineSeconds."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.harness import AgentHarness, wait_for
from tests.integration.images import Pushed, busybox_layer, image_config, push_image
from tests.integration.registry import Registry, auth_registry, registry  # noqa: F401
from tests.integration.test_runc import images, manifest, shared, state  # noqa: F401

TRAPS = ("trap 'echo USR1 > /dev/termination-log; exit 7' USR1; trap 'echo USR2 > /dev/termination-log; exit 8' USR2; "
         "while :; do sleep 0.1; done")


@pytest.fixture(scope="module")
def quitter(registry: Registry) -> Pushed:  # noqa: F811
    """busybox whose image says STOPSIGNAL USR1 (as a Dockerfile writes it: without SIG)."""
    busybox = busybox_layer()
    return push_image(registry, "runc/quitter", "1.0", [busybox], config=image_config([busybox], stop_signal="USR1"))


def ended(agent: AgentHarness, pod: str) -> dict[str, Any]:
    wait_for(lambda: state(agent, pod, "c")["state"].get("terminated"), timeout=30, what=f"{pod} done")
    return state(agent, pod, "c")["state"]["terminated"]  # type: ignore[no-any-return]


def test_termination_messages_in_an_image_container(shared: AgentHarness, quitter: Pushed) -> None:  # noqa: F811
    said = {"name": "c", "image": quitter.reference, "command": ["sh", "-c", "echo done > /dev/termination-log"]}
    shared.write("said.yaml", manifest("said", [said], restartPolicy="Never"))
    own = {"name": "c", "image": quitter.reference, "terminationMessagePath": "/var/why",
           "command": ["sh", "-c", "printf mine > /var/why; [ ! -e /dev/termination-log ] || exit 9; exit 2"]}
    shared.write("own.yaml", manifest("own", [own], restartPolicy="Never"))
    logs = {"name": "c", "image": quitter.reference, "terminationMessagePolicy": "FallbackToLogsOnError",
            "command": ["sh", "-c", "echo from the log; exit 3"]}
    shared.write("logs.yaml", manifest("logs", [logs], restartPolicy="Never"))
    assert ended(shared, "said")["message"] == "done\n"
    # 2, not 9: nothing is mounted at the default path when the container has its own (as the kubelet)
    assert (ended(shared, "own")["message"], ended(shared, "own")["exitCode"]) == ("mine", 2)
    assert ended(shared, "logs")["message"] == "from the log\n"


def test_the_images_stop_signal_ends_it_at_its_deadline(shared: AgentHarness, quitter: Pushed) -> None:  # noqa: F811
    container = {"name": "c", "image": quitter.reference, "command": ["sh", "-c", TRAPS]}
    shared.write("deadline-image.yaml", manifest("deadline-image", [container], activeDeadlineSeconds=3))
    last = ended(shared, "deadline-image")
    assert (last["exitCode"], last["message"]) == (7, "USR1\n")  # the image's STOPSIGNAL
    status = shared.pod("deadline-image")["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")


def test_the_containers_stop_signal_wins_over_the_images(shared: AgentHarness, quitter: Pushed) -> None:  # noqa: F811
    container = {"name": "c", "image": quitter.reference, "command": ["sh", "-c", TRAPS],
                 "lifecycle": {"stopSignal": "SIGUSR2"}}
    shared.write("deadline-field.yaml", manifest("deadline-field", [container], activeDeadlineSeconds=3,
                                                 os={"name": "linux"}))
    last = ended(shared, "deadline-field")
    assert (last["exitCode"], last["message"]) == (8, "USR2\n")


def test_share_process_namespace_is_refused_when_the_container_would_start(shared: AgentHarness,  # noqa: F811
                                                                          quitter: Pushed) -> None:
    container = {"name": "c", "image": quitter.reference, "command": ["true"]}
    shared.write("shared-pid.yaml", manifest("shared-pid", [container], shareProcessNamespace=True))
    wait_for(lambda: state(shared, "shared-pid", "c")["state"].get("waiting", {}).get("reason")
             == "CreateContainerConfigError", what="CreateContainerConfigError")
    assert state(shared, "shared-pid", "c")["state"]["waiting"]["message"].startswith(
        "spec.shareProcessNamespace: the runc runtime cannot give")
