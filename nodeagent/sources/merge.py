"""Merge what the sources read into one desired set, and say what is wrong with it.

Pure. Rules, in order:
- a file that does not parse or validate keeps its last valid pods running (an editor's half-saved
  file must not stop a workload) and is reported with every error;
- a pod name, or a pod UID (the pod manager's key), defined twice: the first file in name order
  wins, files win over the URL, and the conflict is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodeagent.api.manifest import StaticPod
from nodeagent.sources.files import ManifestFile


@dataclass(frozen=True, slots=True)
class SourceProblem:
    reason: str  # InvalidManifest, DuplicateManifest, UnknownField
    message: str
    pod: StaticPod | None = None  # the pod the problem concerns, if one runs


@dataclass(frozen=True, slots=True)
class Desired:
    pods: list[StaticPod]
    problems: list[SourceProblem]
    last_good: dict[str, list[StaticPod]] = field(default_factory=dict)  # file -> its last valid pods


class _Chosen:
    """The pods chosen so far, by name and by UID: a later pod that shares either is a duplicate."""

    def __init__(self, pods: list[StaticPod]) -> None:
        self.by_key = {pod.key: pod for pod in pods}
        self.by_uid = {pod.uid: pod for pod in pods}

    def take(self, pod: StaticPod, problems: list[SourceProblem], *, files_win: bool = False) -> None:
        """Choose `pod`, or report it as a DuplicateManifest of the pod chosen before it."""
        where, verdict = ("at", " (files win)") if files_win else ("in", "")
        first = self.by_key.get(pod.key)
        if first is not None:
            clash = f"pod {pod.key} is defined in {first.origin} and {where} {pod.origin}"
        elif (first := self.by_uid.get(pod.uid)) is not None:
            clash = (f"pod {pod.key} {where} {pod.origin} has the UID {pod.uid} of pod {first.key} in "
                     f"{first.origin}")
        else:
            self.by_key[pod.key] = self.by_uid[pod.uid] = pod
            return
        message = f"{clash}: running the one from {first.origin}{verdict}, ignoring {pod.origin}"
        problems.append(SourceProblem("DuplicateManifest", message, first))

    def pods(self) -> list[StaticPod]:
        return list(self.by_key.values())


def merge_files(files: list[ManifestFile], last_good: dict[str, list[StaticPod]]) -> Desired:
    chosen = _Chosen([])
    problems: list[SourceProblem] = []
    good: dict[str, list[StaticPod]] = {}
    for manifest in files:
        result = manifest.result
        if result.ok:
            pods = result.pods
        else:
            pods = last_good.get(manifest.path, [])
            kept = "; keeping its last valid version running" if pods else ""
            errors = "; ".join(str(p) for p in result.problems)
            problems.append(SourceProblem("InvalidManifest", f"{manifest.path}: {errors}{kept}"))
        if result.warnings:
            problems.append(SourceProblem("UnknownField",
                                          f"{manifest.path}: " + "; ".join(str(w) for w in result.warnings)))
        if pods:
            good[manifest.path] = pods
        for pod in pods:
            chosen.take(pod, problems)
    return Desired(chosen.pods(), problems, good)


def merge_sources(files: Desired, http: list[StaticPod]) -> Desired:
    """File pods and http pods side by side; a name defined by both runs the file's pod."""
    chosen = _Chosen(files.pods)
    problems = list(files.problems)
    for pod in http:
        chosen.take(pod, problems, files_win=True)
    return Desired(chosen.pods(), problems, files.last_good)
