"""An exec's output: read to its end, the first 10 KiB kept, shown shortened."""

from __future__ import annotations

import asyncio

from nodeagent.runtime.execoutput import MAX_OUTPUT_BYTES, message, read_capped


def test_a_huge_output_is_read_to_its_end_and_only_its_start_kept() -> None:
    async def scenario() -> tuple[bytes, bool]:
        stream = asyncio.StreamReader(limit=2**16)
        for i in range(100):
            stream.feed_data(bytes([65 + i % 26]) * 100_000)  # 10 MB in all
        stream.feed_eof()
        kept = await read_capped(stream)
        return kept, stream.at_eof()

    kept, at_end = asyncio.run(scenario())
    assert at_end and kept == b"A" * MAX_OUTPUT_BYTES  # the first 10 KiB, of the first 100 KB written


def test_a_short_output_is_kept_whole() -> None:
    async def scenario() -> bytes:
        stream = asyncio.StreamReader()
        stream.feed_data(b"ok\n")
        stream.feed_eof()
        return await read_capped(stream)

    assert asyncio.run(scenario()) == b"ok\n"


def test_message_is_decoded_stripped_and_shortened() -> None:
    assert message(b"  bad \xff\n") == "bad \ufffd"
    assert message(b"x" * 5000) == "x" * 1024
