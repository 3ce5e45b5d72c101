"""The exec result as kubectl reads it, and terminal sizes as kubectl sends them (nodeagent.kubestream.channels)."""

from __future__ import annotations

from typing import Any, cast

from nodeagent.kubestream.channels import exit_status, resize
from nodeagent.runtime.session import ExecSession


def test_a_zero_exit_is_success_and_another_names_its_code_as_kubectl_expects() -> None:
    assert exit_status(0) == {"metadata": {}, "status": "Success"}
    failed = exit_status(3)
    assert (failed["status"], failed["reason"]) == ("Failure", "NonZeroExitCode")
    assert failed["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}


class Sizes:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def resize(self, width: int, height: int) -> None:
        self.seen.append((width, height))


def sized(payload: bytes) -> list[tuple[int, int]]:
    sizes = Sizes()
    resize(cast(ExecSession, cast(Any, sizes)), payload)
    return sizes.seen


def test_sizes_one_or_several_in_a_message_and_garbage_ignored() -> None:
    assert sized(b'{"Width":80,"Height":24}') == [(80, 24)]
    assert sized(b'{"Width":80,"Height":24}\n{"Width":100,"Height":30}\n') == [(80, 24), (100, 30)]
    assert sized(b'{"Width":80,') == []
    assert sized(b'[1, 2]') == []
    assert sized(b'\xff\xfe') == []
