"""Merge what the sources read into one desired set, and say what is wrong with it.

Pure. Rules, in order:
- a file that does not parse or validate keeps its last valid pods running (an editor's half-saved
  file must not stop a workload) and is reported with every error;
- a pod name defined twice: the first file in name order wins, and the conflict is reported.
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


def merge_files(files: list[ManifestFile], last_good: dict[str, list[StaticPod]]) -> Desired:
    chosen: dict[str, StaticPod] = {}
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
            first = chosen.get(pod.key)
            if first is not None:
                problems.append(SourceProblem(
                    "DuplicateManifest",
                    f"pod {pod.key} is defined in {first.origin} and in {pod.origin}: running the one from "
                    f"{first.origin}, ignoring {pod.origin}", first))
                continue
            chosen[pod.key] = pod
    return Desired(list(chosen.values()), problems, good)


def merge_sources(files: Desired, http: list[StaticPod]) -> Desired:
    """File pods and http pods side by side; a name defined by both runs the file's pod."""
    chosen = {pod.key: pod for pod in files.pods}
    problems = list(files.problems)
    for pod in http:
        first = chosen.get(pod.key)
        if first is not None:
            problems.append(SourceProblem(
                "DuplicateManifest",
                f"pod {pod.key} is defined in {first.origin} and at {pod.origin}: running the one from "
                f"{first.origin} (files win), ignoring {pod.origin}", first))
            continue
        chosen[pod.key] = pod
    return Desired(list(chosen.values()), problems, files.last_good)
