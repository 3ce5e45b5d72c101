"""CRI container logs: the kubelet's layout, parsing records, and rendering them back as kubectl shows them."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.runtime.logs import LogRenderer, container_log_path, parse_line, pod_log_dir, render_log

TS = b"2016-10-06T00:17:09.669794202Z"


def test_layout_is_the_kubelets() -> None:
    assert pod_log_dir("/var/log/pods", "kube-system", "etcd-n1", "abc") == "/var/log/pods/kube-system_etcd-n1_abc"
    assert (container_log_path("/var/log/pods", "kube-system", "etcd-n1", "abc", "etcd", 3)
            == "/var/log/pods/kube-system_etcd-n1_abc/etcd/3.log")


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (TS + b" stdout F hello", (TS, "stdout", False, b"hello")),
        (TS + b" stderr P part", (TS, "stderr", True, b"part")),
        (TS + b" stdout F a  b ", (TS, "stdout", False, b"a  b ")),
        (TS + b" stdout F ", (TS, "stdout", False, b"")),
        (TS + b" stdout F", (TS, "stdout", False, b"")),
        (b"2026-11-22T00:10:53.176479057+00:00 stdout F conmon's offset", (
            b"2026-11-22T00:10:53.176479057+00:00", "stdout", False, b"conmon's offset")),
        (b"2024-01-02T03:04:05Z stdout F whole seconds", (b"2024-01-02T03:04:05Z", "stdout", False, b"whole seconds")),
        (b"", None),
        (b"garbage stdout F x", None),
        (TS + b" stdin F x", None),
        (TS + b" stdout X x", None),
        (TS + b"  stdout F x", None),
    ],
    ids=["full", "partial", "spaces-kept", "empty-content", "no-content-field", "conmon-offset", "whole-second",
         "empty", "no-timestamp", "unknown-stream", "unknown-tag", "double-space"],
)
def test_parse_line(line: bytes, parsed: tuple[bytes, str, bool, bytes] | None) -> None:
    assert parse_line(line) == parsed


RECORDS = (
    b"2016-10-06T00:17:09.000000001Z stdout F one\n"
    b"2016-10-06T00:17:09.000000002Z stdout P tw\n"
    b"2016-10-06T00:17:09.000000003Z stdout P o-\n"
    b"2016-10-06T00:17:09.000000004Z stdout F two\n"
    b"2016-10-06T00:17:09.000000005Z stderr F \n"
)


def test_partial_records_are_joined() -> None:
    assert render_log(RECORDS) == b"one\ntwo-two\n\n"


def test_timestamps_start_each_line_once() -> None:
    assert render_log(RECORDS, timestamps=True) == (
        b"2016-10-06T00:17:09.000000001Z one\n"
        b"2016-10-06T00:17:09.000000002Z two-two\n"
        b"2016-10-06T00:17:09.000000005Z \n"
    )


def test_malformed_records_are_skipped() -> None:
    data = b"not a record\n" + TS + b" stdout F kept\n\n" + TS + b" stdin F dropped\n" + TS + b" stdout F also kept\n"
    assert render_log(data) == b"kept\nalso kept\n"


def test_nothing_renders_as_nothing() -> None:
    assert render_log(b"") == b""
    assert render_log(b"", timestamps=True) == b""


def test_carriage_returns_and_other_breaks_are_content() -> None:
    assert render_log(TS + b" stdout F 10%\r20%\x0b30%\x1c\xc2\x85\n") == b"10%\r20%\x0b30%\x1c\xc2\x85\n"


def test_a_character_cut_between_pieces_survives() -> None:
    encoded = "é".encode()
    data = TS + b" stdout P a" + encoded[:1] + b"\n" + TS + b" stdout F " + encoded[1:] + b"b\n"
    assert render_log(data).decode() == "aéb\n"


def test_a_record_is_rendered_only_once_its_newline_arrived() -> None:
    renderer = LogRenderer()
    assert renderer.feed(TS + b" stdout F hel") == b""
    assert renderer.feed(b"lo\n" + TS + b" stdout F wor") == b"hello\n"
    assert renderer.finish() == b"wor\n"


@given(st.lists(st.tuples(st.sampled_from([b"stdout", b"stderr"]), st.booleans(),
                          st.binary(max_size=40).filter(lambda b: b"\n" not in b)), max_size=20),
       st.integers(min_value=1, max_value=64))
def test_any_slicing_of_a_file_renders_the_same(records: list[tuple[bytes, bool, bytes]], step: int) -> None:
    """Feeding a log file in arbitrary slices (as `logs -f` reads a growing file) changes nothing."""
    data = b"".join(TS + b" " + stream + (b" P " if partial else b" F ") + content + b"\n"
                    for stream, partial, content in records)
    expected = b"".join(content + (b"" if partial else b"\n") for _, partial, content in records)
    renderer = LogRenderer()
    out = b"".join(renderer.feed(data[i:i + step]) for i in range(0, len(data), step)) + renderer.finish()
    assert out == expected == render_log(data)
