"""SPDY/3.1 framing (https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1), as much of it as
kubectl's port-forward uses: SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE and
data frames, header blocks compressed with zlib and SPDY/3's dictionary (one zlib stream per direction of a
connection). Pure: bytes in, frames out, and back. Hostile input is bounded: a frame's length, a header
block's inflated size, and ends as SpdyError.

(spdy-py, the only pure-Python SPDY/3 package, only reads frames, gets their flags wrong and has no types.)
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from nodeagent.errors import NodeAgentError

VERSION = 3
DATA, SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 0, 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL = 1, 3, 5
MAX_FRAME = 1 << 20  # longer frames are refused (kubectl sends 32 KiB of data at most)
MAX_HEADERS = 1 << 16  # inflated size of one header block

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges "
    "age allow authorization cache-control connection content-base content-encoding content-language "
    "content-length content-location content-md5 content-range content-type date etag expect expires from "
    "host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status 200_OK version "
    "HTTP/1.1 url public set-cookie keep-alive origin")
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 "
    "Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 "
    "Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr "
    "May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,"
    "image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
# the spec's dictionary (section 2.6.10.1): its words each behind a 32-bit length, then the tail
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.replace("_", " ").encode() for w in _WORDS.split()) + _TAIL.encode()


class SpdyError(NodeAgentError):
    """The peer broke the protocol: the connection ends."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int  # DATA, or a control frame's type
    stream_id: int = 0  # 0 where the frame has none (SETTINGS, PING)
    flags: int = 0
    data: bytes = b""  # a data frame's payload
    headers: Mapping[str, str] = field(default_factory=dict)  # SYN_STREAM, SYN_REPLY, HEADERS
    value: int = 0  # RST_STREAM's and GOAWAY's status, PING's id, WINDOW_UPDATE's delta

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class Decoder:
    """One direction of a connection: feed it bytes as they come, get the whole frames among them."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if length > MAX_FRAME:
                raise SpdyError(f"a SPDY frame of {length} bytes (at most {MAX_FRAME})")
            if len(self._buffer) < 8 + length:
                break
            head, payload = bytes(self._buffer[:8]), bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            frames.append(self._frame(head, payload))
        return frames

    def _frame(self, head: bytes, payload: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            return Frame(DATA, _id(head), flags, data=payload)
        version, kind = struct.unpack(">HH", head[:4])
        if version & 0x7FFF != VERSION:
            raise SpdyError(f"SPDY version {version & 0x7FFF} (this is SPDY/3.1)")
        try:
            if kind == SYN_STREAM:
                return Frame(kind, _id(payload), flags, headers=self._headers(payload[10:]))
            if kind in (SYN_REPLY, HEADERS):
                return Frame(kind, _id(payload), flags, headers=self._headers(payload[4:]))
            if kind in (RST_STREAM, GOAWAY, WINDOW_UPDATE):
                return Frame(kind, _id(payload), flags, value=int.from_bytes(payload[4:8], "big") & 0x7FFFFFFF)
            if kind == PING:
                return Frame(kind, flags=flags, value=int.from_bytes(payload[:4], "big"))
        except (IndexError, struct.error, zlib.error, UnicodeDecodeError) as exc:
            raise SpdyError(f"a malformed SPDY frame (type {kind}): {exc}") from exc
        return Frame(kind, flags=flags)  # SETTINGS and frames SPDY/3.1 has not: nothing to act on

    def _headers(self, block: bytes) -> dict[str, str]:
        raw = self._inflate.decompress(block, MAX_HEADERS)
        if self._inflate.unconsumed_tail:
            raise SpdyError(f"a SPDY header block inflating to more than {MAX_HEADERS} bytes")
        (count,), offset, headers = struct.unpack_from(">I", raw), 4, {}
        for _ in range(count):
            pair = []
            for _ in range(2):
                (size,) = struct.unpack_from(">I", raw, offset)
                if offset + 4 + size > len(raw):
                    raise SpdyError("a SPDY header block shorter than it says")
                pair.append(raw[offset + 4:offset + 4 + size].decode())
                offset += 4 + size
            headers[pair[0]] = pair[1]
        return headers


class Encoder:
    """The other direction: frames to bytes, header blocks compressed on one zlib stream, in the order sent."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    def syn_stream(self, stream_id: int, headers: Mapping[str, str], *, fin: bool = False) -> bytes:
        body = struct.pack(">IIBB", stream_id, 0, 0, 0) + self._block(headers)
        return _control(SYN_STREAM, FLAG_FIN if fin else 0, body)

    def syn_reply(self, stream_id: int, headers: Mapping[str, str], *, fin: bool = False) -> bytes:
        return _control(SYN_REPLY, FLAG_FIN if fin else 0, struct.pack(">I", stream_id) + self._block(headers))

    def _block(self, headers: Mapping[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.lower().encode() + struct.pack(">I", len(v.encode())) + v.encode()
            for k, v in headers.items())
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)


def data_frame(stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
    return struct.pack(">IB", stream_id & 0x7FFFFFFF, FLAG_FIN if fin else 0) + len(data).to_bytes(3, "big") + data


def rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def goaway(last_stream_id: int, status: int = 0) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_stream_id, status))


def _control(kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack(">HHB", 0x8000 | VERSION, kind, flags) + len(body).to_bytes(3, "big") + body


def _id(data: bytes) -> int:
    return int.from_bytes(data[:4], "big") & 0x7FFFFFFF
