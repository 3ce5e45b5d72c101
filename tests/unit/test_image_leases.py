"""The image store's leases: written without fsync, so an empty one (a power cut) holds nothing; a garbled one
stops a prune."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.images.errors import ImageError
from nodeagent.images.layout import Lease, StoreLayout


def test_an_empty_lease_holds_nothing_and_a_garbled_one_is_an_error(tmp_path: Path) -> None:
    layout = StoreLayout(str(tmp_path))
    layout.create()
    layout.write_lease(Lease("kept", "sha256:" + "a" * 64, ("sha256:" + "b" * 64,), ("sha256:" + "c" * 64,)))
    Path(layout.lease_path("cut-short")).write_bytes(b"")
    assert [lease.holder for lease in layout.read_leases()] == ["kept"]
    Path(layout.lease_path("garbled")).write_bytes(b'{"holder": ')
    with pytest.raises(ImageError, match="unreadable lease"):
        layout.read_leases()
