"""The file source and the merge: which files are read, caching by content, and the rules for bad and duplicate manifests.

Real files in pytest's tmp_path; FileSource.scan() is called directly (no event loop), the watcher on its own
on the test's event loop.
"""

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.api.manifest import StaticPod
from nodeagent.sources.files import FileSource, ManifestFile, _Watcher, is_manifest_name
from nodeagent.sources.merge import Desired, merge_files
from tests.conftest import ReadableSource
from tests.unit.waiting import until

NODE = "node1"


def manifest(name: str, image: str = "nginx:1.25", extra: str = "") -> str:
    return (f"apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n"
            f"  - name: c\n    image: {image}\n{extra}")


def json_manifest(name: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}]}})


BROKEN = ("apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"
          "  - {name: c, image: x, resources: {limits: {memory: lots}}}\n  - {name: c}\n")


def source(path: Path) -> ReadableSource:
    return ReadableSource(str(path), node_name=NODE, frequency_seconds=20)


def names(found: list[ManifestFile]) -> list[str]:
    return [os.path.basename(m.path) for m in found]


def image_of(pod: StaticPod) -> str | None:
    return (pod.pod.spec.containers or [])[0].image


def pod_names(desired: Desired) -> list[str]:
    return [p.name for p in desired.pods]


# -- which names are manifests --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "read"),
    [("web.yaml", True), ("web.yml", True), ("web.json", True), ("10-etcd.yaml", True), ("a.b.yaml", True),
     (".web.yaml", False), (".hidden", False), ("web.yaml.bak", False), ("web.yaml~", False), (".web.yaml.swp", False),
     ("web.yaml.swp", False), ("#web.yaml#", False), (".#web.yaml", False), ("4913", False), ("web.txt", False),
     ("web", False), ("web.yaml.orig", False), ("web.YAML", True), ("yaml", False), ("web.jsonl", False)],
    ids=lambda value: repr(value) if isinstance(value, str) else "",
)
def test_is_manifest_name(name: str, read: bool) -> None:
    assert is_manifest_name(name) is read


# -- FileSource.scan ----------------------------------------------------------------------------------

def test_scan_reads_yaml_yml_and_json_in_name_order_and_ignores_the_rest(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json_manifest("from-json"))
    (tmp_path / "a.yaml").write_text(manifest("from-yaml"))
    (tmp_path / "b.yml").write_text(manifest("from-yml"))
    for ignored in (".a.yaml", "a.yaml.bak", "a.yaml~", ".a.yaml.swp", "notes.txt", "README", "a.yaml.dpkg-old"):
        (tmp_path / ignored).write_text(manifest("ignored"))
    (tmp_path / "subdir").mkdir()
    (tmp_path / "subdir" / "nested.yaml").write_text(manifest("nested"))

    found = source(tmp_path).scan()

    assert names(found) == ["a.yaml", "b.yml", "c.json"]
    assert [[p.name for p in m.result.pods] for m in found] == [["from-yaml-node1"], ["from-yml-node1"],
                                                                 ["from-json-node1"]]
    assert all(m.result.ok for m in found)
    assert [m.result.pods[0].origin for m in found] == [str(tmp_path / n) for n in ("a.yaml", "b.yml", "c.json")]


def test_scan_ignores_a_directory_named_like_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("web"))
    (tmp_path / "dir.yaml").mkdir()
    assert names(source(tmp_path).scan()) == ["a.yaml"]


def test_static_pod_path_may_be_a_single_file(tmp_path: Path) -> None:
    path = tmp_path / "only.yaml"
    path.write_text(manifest("single"))
    (tmp_path / "other.yaml").write_text(manifest("other"))
    found = source(path).scan()
    assert [m.path for m in found] == [str(path)]
    assert [p.name for p in found[0].result.pods] == ["single-node1"]


def test_a_single_file_is_read_whatever_its_name(tmp_path: Path) -> None:
    # the extension filter is for directory listings; a file named on purpose is read, as the kubelet does
    path = tmp_path / "pod.manifest"
    path.write_text(manifest("named"))
    assert [p.name for p in source(path).scan()[0].result.pods] == ["named-node1"]


def test_a_missing_directory_gives_no_pods(tmp_path: Path) -> None:
    missing = source(tmp_path / "does-not-exist")
    assert missing.scan() == []
    assert missing.scan() == []


def test_a_directory_that_cannot_be_listed_is_not_an_empty_one(tmp_path: Path) -> None:
    loop = tmp_path / "manifests"
    loop.symlink_to(loop)  # ELOOP: it exists, and cannot be read
    assert FileSource(str(loop), node_name=NODE, frequency_seconds=20).scan() is None


def test_a_directory_that_appears_later_is_read(tmp_path: Path) -> None:
    directory = tmp_path / "manifests"
    src = source(directory)
    assert src.scan() == []
    directory.mkdir()
    (directory / "web.yaml").write_text(manifest("web"))
    assert names(src.scan()) == ["web.yaml"]


def test_an_empty_directory_gives_no_pods(tmp_path: Path) -> None:
    assert source(tmp_path).scan() == []


def test_an_unchanged_file_is_not_parsed_again(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("a"))
    (tmp_path / "b.yaml").write_text(manifest("b"))
    src = source(tmp_path)
    first = src.scan()
    second = src.scan()
    assert second[0] is first[0]
    assert second[1] is first[1]
    assert second[0].result is first[0].result


def test_rewriting_the_same_bytes_keeps_the_cached_parse(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(manifest("a"))
    src = source(tmp_path)
    first = src.scan()[0]
    path.write_text(manifest("a"))  # touched, same content
    os.utime(path, (1, 1))
    assert src.scan()[0] is first


def test_a_changed_file_is_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(manifest("a", image="nginx:1.25"))
    src = source(tmp_path)
    first = src.scan()[0]
    path.write_text(manifest("a", image="nginx:1.26"))
    second = src.scan()[0]
    assert second is not first
    assert second.digest != first.digest
    assert image_of(second.result.pods[0]) == "nginx:1.26"
    assert second.result.pods[0].uid != first.result.pods[0].uid
    assert src.scan()[0] is second


def test_an_unchanged_invalid_file_is_not_parsed_again_either(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BROKEN)
    src = source(tmp_path)
    first = src.scan()[0]
    assert not first.result.ok
    assert src.scan()[0] is first


def test_a_removed_file_is_dropped_and_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(manifest("a"))
    src = source(tmp_path)
    first = src.scan()[0]
    path.unlink()
    assert src.scan() == []
    path.write_text(manifest("a"))
    again = src.scan()[0]
    assert again is not first  # parsed afresh
    assert again.digest == first.digest


def test_a_file_over_10MiB_is_refused(tmp_path: Path) -> None:
    (tmp_path / "huge.yaml").write_bytes(manifest("huge").encode() + b"#" * (10 * 1024 * 1024))
    result = source(tmp_path).scan()[0].result
    assert not result.ok and not result.pods
    assert "larger than 10 MiB" in str(result.problems[0])


class ScanBlockedError(Exception):
    """Raised by alarm_after() inside the call that blocked (not an OSError, which the code under test catches)."""


@contextlib.contextmanager
def alarm_after(seconds: float) -> Iterator[None]:
    """Interrupt a call blocked in the kernel (open() of a FIFO) instead of hanging the test run.

    pytest-timeout may be using SIGALRM too: its handler and the rest of its timer are put back.
    """
    def expire(signum: int, frame: object) -> None:
        raise ScanBlockedError(f"still blocked after {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    started = time.monotonic()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


def test_scan_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("web"))
    os.mkfifo(tmp_path / "pipe.yaml")
    with alarm_after(0.3):
        found = source(tmp_path).scan()
    assert names(found) == ["a.yaml"]


# -- merge_files ----------------------------------------------------------------------------------------

def test_merge_takes_every_pod_of_every_valid_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("a"))
    (tmp_path / "b.yaml").write_text(manifest("b") + "---\n" + manifest("c"))
    desired = merge_files(source(tmp_path).scan(), {})
    assert pod_names(desired) == ["a-node1", "b-node1", "c-node1"]
    assert desired.problems == []
    assert {os.path.basename(k): [p.name for p in v] for k, v in desired.last_good.items()} == {
        "a.yaml": ["a-node1"], "b.yaml": ["b-node1", "c-node1"]}


def test_merge_duplicate_name_first_file_in_name_order_wins(tmp_path: Path) -> None:
    (tmp_path / "20-web.yaml").write_text(manifest("web", image="second"))
    (tmp_path / "10-web.yaml").write_text(manifest("web", image="first"))
    (tmp_path / "30-other.yaml").write_text(manifest("other"))
    desired = merge_files(source(tmp_path).scan(), {})

    assert pod_names(desired) == ["web-node1", "other-node1"]
    winner = desired.pods[0]
    assert winner.origin == str(tmp_path / "10-web.yaml")
    assert image_of(winner) == "first"
    [problem] = desired.problems
    assert problem.reason == "DuplicateManifest"
    assert str(tmp_path / "10-web.yaml") in problem.message
    assert str(tmp_path / "20-web.yaml") in problem.message
    assert problem.message == (f"pod default/web-node1 is defined in {tmp_path / '10-web.yaml'} and in "
                               f"{tmp_path / '20-web.yaml'}: running the one from {tmp_path / '10-web.yaml'}, "
                               f"ignoring {tmp_path / '20-web.yaml'}")
    assert problem.pod is winner


def test_same_name_in_another_namespace_is_not_a_duplicate(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(manifest("web"))
    (tmp_path / "b.yaml").write_text(manifest("web").replace("  name: web\n", "  name: web\n  namespace: other\n"))
    desired = merge_files(source(tmp_path).scan(), {})
    assert [p.key for p in desired.pods] == ["default/web-node1", "other/web-node1"]
    assert desired.problems == []


def test_a_backup_copy_never_shadows_the_manifest(tmp_path: Path) -> None:
    """kubernetes#136962: web.yaml.bak silently overrode web.yaml in the kubelet."""
    (tmp_path / "web.yaml").write_text(manifest("web", image="new"))
    (tmp_path / "web.yaml.bak").write_text(manifest("web", image="old"))
    (tmp_path / "a-web.yaml~").write_text(manifest("web", image="older"))
    desired = merge_files(source(tmp_path).scan(), {})
    assert [image_of(p) for p in desired.pods] == ["new"]
    assert desired.problems == []


def test_an_invalid_file_keeps_its_last_valid_pods_and_lists_every_error(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(manifest("web"))
    src = source(tmp_path)
    before = merge_files(src.scan(), {})
    running = before.pods[0]

    path.write_text(BROKEN)
    after = merge_files(src.scan(), before.last_good)

    assert after.pods == [running]
    assert after.pods[0] is running
    assert after.last_good == {str(path): [running]}
    [problem] = after.problems
    assert problem.reason == "InvalidManifest"
    assert problem.message == (
        f"{path}: spec.containers[0].resources.limits.memory: quantities must match the regular expression "
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'; spec.containers[1].name: Duplicate value: \"c\"; "
        "spec.containers[1].image: Required value; keeping its last valid version running")

    # still broken at the next scan: still running, still reported
    again = merge_files(src.scan(), after.last_good)
    assert again.pods == [running]
    assert [p.reason for p in again.problems] == ["InvalidManifest"]

    # fixed with new content: the new pod replaces it
    path.write_text(manifest("web", image="nginx:1.27"))
    fixed = merge_files(src.scan(), again.last_good)
    assert fixed.problems == []
    assert image_of(fixed.pods[0]) == "nginx:1.27"
    assert fixed.pods[0] is not running


def test_a_file_that_was_never_valid_contributes_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BROKEN)
    (tmp_path / "good.yaml").write_text(manifest("good"))
    desired = merge_files(source(tmp_path).scan(), {})
    assert pod_names(desired) == ["good-node1"]
    assert list(desired.last_good) == [str(tmp_path / "good.yaml")]
    [problem] = desired.problems
    assert problem.reason == "InvalidManifest"
    assert problem.message.startswith(f"{tmp_path / 'bad.yaml'}: spec.containers[0].resources.limits.memory: ")
    assert "keeping" not in problem.message
    assert problem.pod is None


def test_a_file_that_does_not_parse_as_yaml_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: [\n")
    desired = merge_files(source(tmp_path).scan(), {})
    assert desired.pods == []
    assert [p.reason for p in desired.problems] == ["InvalidManifest"]
    assert "invalid YAML" in desired.problems[0].message


def test_the_last_good_version_of_a_removed_file_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(manifest("web"))
    src = source(tmp_path)
    before = merge_files(src.scan(), {})
    path.unlink()
    after = merge_files(src.scan(), before.last_good)
    assert after.pods == [] and after.last_good == {} and after.problems == []


def test_unknown_fields_are_reported_and_the_pod_still_runs(tmp_path: Path) -> None:
    (tmp_path / "web.yaml").write_text(manifest("web", extra="    resource: {limits: {cpu: '1'}}\n  hostNetwrk: true\n"))
    desired = merge_files(source(tmp_path).scan(), {})
    assert pod_names(desired) == ["web-node1"]
    [problem] = desired.problems
    assert problem.reason == "UnknownField"
    assert problem.message == (
        f"{tmp_path / 'web.yaml'}: spec.hostNetwrk: unknown field \"hostNetwrk\" (did you mean \"hostNetwork\"?); "
        "spec.containers[0].resource: unknown field \"resource\" (did you mean \"resources\"?)")


def test_a_duplicate_kept_from_a_last_good_version_still_loses_to_an_earlier_file(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(manifest("web", image="b"))
    src = source(tmp_path)
    before = merge_files(src.scan(), {})
    (tmp_path / "b.yaml").write_text(BROKEN)
    (tmp_path / "a.yaml").write_text(manifest("web", image="a"))
    after = merge_files(src.scan(), before.last_good)
    assert [image_of(p) for p in after.pods] == ["a"]
    assert sorted(p.reason for p in after.problems) == ["DuplicateManifest", "InvalidManifest"]


async def until_notified(notified: list[str]) -> None:
    """The event loop runs (it reads the watch) until the watcher has woken the scan."""
    await until(lambda: notified, seconds=5, what="the watcher's wake-up")


async def test_the_watcher_hears_writes_renames_and_deletions_but_not_the_scans_own_reads(tmp_path: Path) -> None:
    """inotify is asked only for what CHANGES names: reading every manifest at each scan wakes nothing."""
    notified: list[str] = []
    watcher = _Watcher(str(tmp_path), lambda: notified.append("woken"))
    (tmp_path / "a.yaml").write_text(manifest("a"))
    watcher.ensure_started()
    try:
        for _ in range(20):
            (tmp_path / "a.yaml").read_bytes()
        await asyncio.sleep(0.2)
        assert notified == []
        for change in (lambda: (tmp_path / "b.yaml").write_text(manifest("b")),
                       lambda: os.replace(tmp_path / "b.yaml", tmp_path / "c.yaml"),
                       lambda: (tmp_path / "a.yaml").unlink()):
            change()
            await until_notified(notified)
            notified.clear()
    finally:
        watcher.stop()


async def test_a_dot_file_renamed_into_place_wakes_the_scan_once_it_is_a_manifest(tmp_path: Path) -> None:
    """A careful writer's temporary dot file is no manifest: its close wakes nothing, its rename does (the
    scan used to wait a debounce for that rename after the dot file's close)."""
    notified: list[str] = []
    watcher = _Watcher(str(tmp_path), lambda: notified.append("woken"))
    watcher.ensure_started()
    try:
        (tmp_path / ".web.yaml.tmp").write_text(manifest("web"))
        (tmp_path / "notes.txt").write_text("not a manifest")
        await asyncio.sleep(0.2)
        assert notified == []
        os.replace(tmp_path / ".web.yaml.tmp", tmp_path / "web.yaml")
        await until_notified(notified)
        assert len(notified) == 1  # the rename's two events, read together
    finally:
        watcher.stop()


async def test_the_file_named_as_staticpodpath_wakes_the_scan_whatever_its_name(tmp_path: Path) -> None:
    notified: list[str] = []
    watcher = _Watcher(str(tmp_path / "pod"), lambda: notified.append("woken"))
    watcher.ensure_started()  # no such file yet: the periodic re-list finds it, and watches its directory
    (tmp_path / "pod").write_text(manifest("web"))
    watcher.ensure_started()
    try:
        (tmp_path / "elsewhere").write_text(manifest("web"))
        await asyncio.sleep(0.2)
        assert notified == []  # neither the file named nor a manifest name
        (tmp_path / "pod").write_text(manifest("web"))
        await until_notified(notified)
    finally:
        watcher.stop()


async def test_a_directory_removed_and_made_again_is_watched_again(tmp_path: Path) -> None:
    """Its removal wakes the scan and ends the watch; the scan's next ensure_started watches the new one."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    notified: list[str] = []
    watcher = _Watcher(str(directory), lambda: notified.append("woken"))
    watcher.ensure_started()
    try:
        directory.rmdir()
        await until_notified(notified)
        watcher.ensure_started()  # gone: nothing to watch, the periodic re-list looks again
        directory.mkdir()
        watcher.ensure_started()
        notified.clear()
        (directory / "web.yaml").write_text(manifest("web"))
        await until_notified(notified)
    finally:
        watcher.stop()
