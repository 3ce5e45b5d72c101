"""netns_exists tells a mounted namespace from an empty file left by a creation cut short (root: a bind mount
of this process's network namespace over a file of the test's own)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nodeagent.network.namespaces import netns_exists


def test_only_a_mounted_namespace_exists(tmp_path: Path) -> None:
    mounted, empty, link = tmp_path / "mounted", tmp_path / "empty", tmp_path / "link"
    mounted.touch()
    empty.touch()
    subprocess.run(["mount", "--bind", f"/proc/{os.getpid()}/ns/net", str(mounted)], check=True)
    try:
        link.symlink_to(mounted)
        assert netns_exists(str(mounted))
        assert not netns_exists(str(empty))
        assert not netns_exists(str(link))  # as os.path.ismount: a symlink is no mount point
        assert not netns_exists(str(tmp_path / "missing"))
        assert not netns_exists(str(tmp_path))
    finally:
        subprocess.run(["umount", str(mounted)], check=True)
    assert not netns_exists(str(mounted))
