"""SPDY/3.1 framing (nodeagent.kubestream.spdy) against frames captured from kubectl 1.32's port-forward."""

from __future__ import annotations

import hashlib
import struct
import zlib

import pytest

from nodeagent.kubestream import spdy

# kubectl port-forward POD :8080, one connection: the error stream's SYN_STREAM, its FIN, the data
# stream's SYN_STREAM (its header block compressed on the same zlib stream), then the request on it
CAPTURED = bytes.fromhex(
    "8003 0001 0000003e 00000001 00000000 00 00"
    "78f9e3c6a7c202253a703a2b294a4dcc8516 25aca9a08086 14cb45e01c60616061c0c0c0c059 0489c64c50f2663400000000ffff"
    "00000001 01000000"
    "8003 0001 00000018 00000003 00000000 00 00 c2aa19540e2512d60b000000ffff"
    "00000003 00000006" + b"GET /\n".hex())


def test_the_dictionary_is_the_specs() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_kubectls_frames_are_read() -> None:
    frames = spdy.Decoder().feed(CAPTURED)
    assert [(f.kind, f.stream_id, f.fin) for f in frames] == [
        (spdy.SYN_STREAM, 1, False), (spdy.DATA, 1, True), (spdy.SYN_STREAM, 3, False), (spdy.DATA, 3, False)]
    assert frames[0].headers == {"streamtype": "error", "port": "8080", "requestid": "0"}
    assert frames[2].headers == {"streamtype": "data", "port": "8080", "requestid": "0"}
    assert frames[3].data == b"GET /\n"


def test_frames_split_anywhere_are_read_the_same() -> None:
    decoder = spdy.Decoder()
    frames = [frame for i in range(len(CAPTURED)) for frame in decoder.feed(CAPTURED[i:i + 1])]
    assert frames == spdy.Decoder().feed(CAPTURED)


def test_what_is_written_reads_back_on_one_compression_stream() -> None:
    encoder, decoder = spdy.Encoder(), spdy.Decoder()
    wire = (encoder.syn_reply(1, {}) + encoder.syn_stream(5, {"streamType": "data", "port": "80"}, fin=True)
            + spdy.data_frame(5, b"x" * 100, fin=True) + spdy.rst_stream(7, spdy.RST_CANCEL) + spdy.ping(9)
            + spdy.goaway(5))
    frames = decoder.feed(wire)
    assert [(f.kind, f.stream_id, f.fin, f.value) for f in frames] == [
        (spdy.SYN_REPLY, 1, False, 0), (spdy.SYN_STREAM, 5, True, 0), (spdy.DATA, 5, True, 0),
        (spdy.RST_STREAM, 7, False, spdy.RST_CANCEL), (spdy.PING, 0, False, 9), (spdy.GOAWAY, 5, False, 0)]
    assert frames[1].headers == {"streamtype": "data", "port": "80"}  # names lower-cased, as SPDY/3 wants
    assert frames[2].data == b"x" * 100


def test_a_frame_longer_than_the_bound_is_refused_before_it_is_buffered() -> None:
    with pytest.raises(spdy.SpdyError, match="bytes"):
        spdy.Decoder().feed(struct.pack(">IB", 1, 0) + (spdy.MAX_FRAME + 1).to_bytes(3, "big"))


def test_a_header_block_that_inflates_too_far_is_refused() -> None:
    deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
    bomb = deflate.compress(b"\0" * (spdy.MAX_HEADERS * 4)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    frame = struct.pack(">HHB", 0x8003, spdy.SYN_REPLY, 0) + (4 + len(bomb)).to_bytes(3, "big") + \
        struct.pack(">I", 1) + bomb
    with pytest.raises(spdy.SpdyError, match="more than"):
        spdy.Decoder().feed(frame)


def test_garbage_in_a_header_block_is_a_protocol_error() -> None:
    frame = struct.pack(">HHB", 0x8003, spdy.SYN_REPLY, 0) + (8).to_bytes(3, "big") + struct.pack(">II", 1, 7)
    with pytest.raises(spdy.SpdyError):
        spdy.Decoder().feed(frame)


def test_another_spdy_version_is_refused() -> None:
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.Decoder().feed(struct.pack(">HHB", 0x8002, spdy.PING, 0) + (4).to_bytes(3, "big") + b"\0\0\0\1")
