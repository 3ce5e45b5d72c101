"""Termination messages as the kubelet reads them: the file's last 4096 bytes, or the log's end on failure,
never through a symlink or a FIFO; the pod's 12 KiB shared out in its status."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from nodeagent.agent import termination_message as tm
from nodeagent.agent.records import ContainerRecord, State, Termination
from nodeagent.agent.status import container_status
from nodeagent.api.model import Container

FINISHED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def container(**fields: str) -> Container:
    return Container.model_validate({"name": "c", "image": "x", **fields})


def log_lines(*lines: str) -> str:
    return "".join(f"2026-01-01T00:00:00.000000000Z stdout F {line}\n" for line in lines)


def test_the_mount_is_a_fresh_world_writable_file_per_attempt(tmp_path: Path) -> None:
    first = tm.message_mount(str(tmp_path), container(), 0)
    assert first is not None
    assert first.container_path == "/dev/termination-log"
    assert first.host_path == str(tmp_path / "containers" / "c" / "0")
    Path(first.host_path).write_text("old")
    second = tm.message_mount(str(tmp_path), container(), 1)
    assert second is not None
    assert os.listdir(tmp_path / "containers" / "c") == ["1"]  # the earlier attempt's file is gone
    assert Path(second.host_path).read_text() == ""
    assert stat.S_IMODE(os.stat(second.host_path).st_mode) == 0o666


@pytest.mark.parametrize(("path", "expected"), [
    ("/tmp/msg", "/tmp/msg"), ("tmp/msg", "/tmp/msg"), ("/a/../b//c", "/b/c"), ("//x", "/x")])
def test_the_path_is_made_absolute_as_the_kubelet(path: str, expected: str) -> None:
    assert tm.container_path(container(terminationMessagePath=path)) == expected


def test_a_path_that_is_the_root_gets_no_mount(tmp_path: Path) -> None:
    assert tm.message_mount(str(tmp_path), container(terminationMessagePath="/.."), 0) is None


def test_the_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("Sleep expired\n")
    assert tm.read_message(str(tmp_path / "m"), str(tmp_path / "log"), "File", 0) == "Sleep expired\n"


def test_only_the_last_4096_bytes_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"a" * 10000 + b"b" * 4000)
    message = tm.read_message(str(tmp_path / "m"), "", "File", 1)
    assert message == "a" * 96 + "b" * 4000


def test_a_missing_or_empty_file_with_the_file_policy_is_no_message(tmp_path: Path) -> None:
    (tmp_path / "log").write_text(log_lines("boom"))
    assert tm.read_message(str(tmp_path / "none"), str(tmp_path / "log"), "File", 1) == ""
    (tmp_path / "m").write_text("")
    assert tm.read_message(str(tmp_path / "m"), str(tmp_path / "log"), "File", 1) == ""


def test_fallback_to_logs_on_error_reads_the_logs_end(tmp_path: Path) -> None:
    (tmp_path / "m").write_text("")
    (tmp_path / "log").write_text(log_lines(*(f"line {i}" for i in range(100))))
    message = tm.read_message(str(tmp_path / "m"), str(tmp_path / "log"), "FallbackToLogsOnError", 2)
    assert message == "".join(f"line {i}\n" for i in range(20, 100))  # the last 80 lines


def test_fallback_keeps_the_last_2048_bytes(tmp_path: Path) -> None:
    (tmp_path / "log").write_text(log_lines(*("x" * 99 + str(i % 10) for i in range(50))))
    message = tm.read_message(str(tmp_path / "none"), str(tmp_path / "log"), "FallbackToLogsOnError", 1)
    assert len(message.encode()) == 2048
    assert message.endswith("x9\n")


def test_fallback_joins_partial_records(tmp_path: Path) -> None:
    (tmp_path / "log").write_text("2026-01-01T00:00:00Z stderr P half \n2026-01-01T00:00:00Z stderr F done\n")
    assert tm.read_message(str(tmp_path / "none"), str(tmp_path / "log"), "FallbackToLogsOnError", 1) == "half done\n"


def test_no_fallback_on_success_or_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "log").write_text(log_lines("output"))
    assert tm.read_message(str(tmp_path / "none"), str(tmp_path / "log"), "FallbackToLogsOnError", 0) == ""
    (tmp_path / "m").write_text("mine")
    assert tm.read_message(str(tmp_path / "m"), str(tmp_path / "log"), "FallbackToLogsOnError", 1) == "mine"


def test_fallback_without_a_log_is_no_message(tmp_path: Path) -> None:
    assert tm.read_message(str(tmp_path / "none"), str(tmp_path / "log"), "FallbackToLogsOnError", 1) == ""


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("host secret")
    (tmp_path / "m").symlink_to(tmp_path / "secret")
    message = tm.read_message(str(tmp_path / "m"), "", "File", 1)
    assert "host secret" not in message
    assert message.startswith(f"Error on reading termination log {tmp_path / 'm'}: ")


def test_a_fifo_is_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "m")
    message = tm.read_message(str(tmp_path / "m"), "", "File", 1)
    assert message == f"Error on reading termination log {tmp_path / 'm'}: not a regular file"


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"bad \xff byte")
    assert tm.read_message(str(tmp_path / "m"), "", "File", 1) == "bad \ufffd byte"


def test_the_pods_12_kib_are_shared_out_in_its_status() -> None:
    """normalizeStatus: each status keeps MaxPodTerminationMessageLogLength / containers bytes."""
    assert tm.pod_budget(3) == 4096
    assert tm.pod_budget(48) == 256
    assert tm.pod_budget(0) == 12288
    ended = Termination(exit_code=1, reason="Error", started_at=None, finished_at=FINISHED, container_id=None,
                        message="é" * 3000)
    record = ContainerRecord("c", "x", init=False, state=State.TERMINATED, terminated=ended, last_termination=ended)
    status = container_status(record, frozenset(), 257)
    assert status["state"]["terminated"]["message"] == "é" * 128 + "\ufffd"
    assert status["lastState"]["terminated"]["message"] == "é" * 128 + "\ufffd"
    assert container_status(record, frozenset())["state"]["terminated"]["message"] == "é" * 3000  # within 12 KiB alone


