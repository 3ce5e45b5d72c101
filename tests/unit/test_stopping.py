"""How a container is stopped: lifecycle.stopSignal > the image's STOPSIGNAL > SIGTERM, and a probe's own
terminationGracePeriodSeconds when it kills."""

from __future__ import annotations

import signal

import pytest

from nodeagent.agent import stopping
from nodeagent.api.model import Container, PodSpec, Probe
from nodeagent.api.signals import STOP_SIGNALS, parse_signal


def container(stop_signal: str | None = None) -> Container:
    lifecycle = {"lifecycle": {"stopSignal": stop_signal}} if stop_signal else {}
    return Container.model_validate({"name": "c", "image": "x", **lifecycle})


def test_the_containers_field_wins_over_the_image() -> None:
    assert stopping.stop_signal(container("SIGUSR1"), image_signal=3) == signal.SIGUSR1
    assert stopping.stop_signal(container(), image_signal=3) == signal.SIGQUIT
    assert stopping.stop_signal(container()) == signal.SIGTERM


@pytest.mark.parametrize(("name", "number"), [
    ("SIGRTMIN", signal.SIGRTMIN), ("SIGRTMIN+1", signal.SIGRTMIN + 1), ("SIGRTMAX", signal.SIGRTMAX),
    ("SIGRTMAX-14", signal.SIGRTMAX - 14), ("SIGCLD", signal.SIGCHLD), ("SIGIOT", signal.SIGABRT),
    ("SIGPOLL", signal.SIGIO), ("SIGSTKFLT", 16), ("SIGPWR", signal.SIGPWR), ("SIGWINCH", signal.SIGWINCH)])
def test_the_api_servers_names_are_linux_numbers(name: str, number: int) -> None:
    assert STOP_SIGNALS[name] == number


def test_every_name_the_api_server_lists() -> None:
    assert len(STOP_SIGNALS) == 65  # supportedStopSignalsLinux: 34 names, SIGRTMIN..SIGRTMAX (31)
    for name, number in STOP_SIGNALS.items():
        if not name.startswith("SIGRT"):
            assert getattr(signal, name, None) in (number, None), name


@pytest.mark.parametrize(("value", "number"), [
    ("SIGQUIT", 3), ("QUIT", 3), ("sigquit", 3), ("9", 9), ("RTMIN+2", 36), ("0", None), ("SIGNOPE", None),
    ("65", None)])
def test_an_images_stop_signal_as_moby_parses_it(value: str, number: int | None) -> None:
    assert parse_signal(value) == number


def spec(grace: int) -> PodSpec:
    return PodSpec.model_validate({"containers": [{"name": "c", "image": "x"}],
                                   "terminationGracePeriodSeconds": grace})


def probe(grace: int | None) -> Probe:
    return Probe.model_validate({"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": grace})


def test_a_probes_grace_period_wins_when_it_kills() -> None:
    assert stopping.kill_grace(spec(30), probe(5)) == 5
    assert stopping.kill_grace(spec(30), probe(None)) == 30
    assert stopping.kill_grace(spec(30)) == 30


def test_never_less_than_two_seconds() -> None:
    assert stopping.kill_grace(spec(0)) == 2
    assert stopping.kill_grace(spec(30), probe(1)) == 2
