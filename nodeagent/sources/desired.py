"""The desired set of pods, kept from both sources' reads: what the pod manager is to run.

    restored(pods)   the pods that ran before an agent restart (from its state directory)
    files(scan)      a scan of staticPodPath (None: it could not be read)
    http(pods, ...)  a fetch of staticPodURL (None: unchanged, or it failed)
    desired()        both merged, or None before the first scan

Until staticPodPath was read once, the restored file pods stand for it; until the URL answered once, the
restored http pods stand for its set: an unreadable directory or an unreachable URL at boot stops nothing.
Each file's last valid pods keep running while it is invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nodeagent.api.manifest import StaticPod
from nodeagent.sources.files import ManifestFile
from nodeagent.sources.merge import Desired, merge_files, merge_sources


@dataclass
class DesiredSet:
    _restored: list[StaticPod] = field(default_factory=list)
    _last_good: dict[str, list[StaticPod]] = field(default_factory=dict)
    _files: Desired | None = None
    _http: list[StaticPod] | None = None  # None: the URL has not answered yet
    _http_attempted: bool = False

    def restored(self, pods: Sequence[StaticPod]) -> None:
        """The pods running before the restart (not terminating): each file's stand as its last valid version."""
        self._restored = list(pods)
        self._last_good = {}
        for pod in self._restored:
            if pod.source == "file":
                self._last_good.setdefault(pod.origin, []).append(pod)

    def files(self, scan: list[ManifestFile] | None) -> bool:
        """A scan of the manifest directory; True if the desired set may have changed."""
        if scan is None:
            if self._files is not None:
                return False
            self._files = Desired([p for p in self._restored if p.source == "file"], [])
        else:
            self._files = merge_files(scan, self._last_good)
            self._last_good = self._files.last_good
        return True

    def http(self, pods: list[StaticPod] | None) -> bool:
        """A fetch of the URL; True if the desired set may have changed (new pods, or the first attempt)."""
        first = not self._http_attempted
        self._http_attempted = True
        if pods is not None:
            self._http = pods
        return pods is not None or first

    def url_removed(self) -> None:
        """The URL is gone from the configuration (or was never set): so are its pods."""
        self._http = []

    def desired(self, http_running: Sequence[StaticPod]) -> Desired | None:
        """Both sources merged; `http_running` (the http pods the agent runs) stands for the URL's set until it
        has answered. None before the first scan of the directory."""
        if self._files is None:
            return None
        return merge_sources(self._files, self._http if self._http is not None else list(http_running))

    @property
    def http_attempted(self) -> bool:
        """The URL has answered (or failed) once."""
        return self._http_attempted
