import json
import time

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from nodeagent.api.decode import MAX_MANIFEST_BYTES, DecodeError, decode_manifest
from nodeagent.api.yamlload import load_documents

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}, "spec": {"containers": []}}


def test_yaml_pod() -> None:
    decoded = decode_manifest(b"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n")
    assert [p.data["metadata"]["name"] for p in decoded.pods] == ["a"]


def test_json_pod() -> None:
    decoded = decode_manifest(json.dumps(POD).encode())
    assert decoded.pods[0].data == POD


def test_pod_list_and_v1_list() -> None:
    for kind in ("PodList", "List"):
        body = {"apiVersion": "v1", "kind": kind, "items": [POD, {**POD, "metadata": {"name": "b"}}]}
        decoded = decode_manifest(json.dumps(body).encode())
        assert [(p.where, p.data["metadata"]["name"]) for p in decoded.pods] == [("items[0]", "a"), ("items[1]", "b")]


def test_podlist_items_may_omit_kind() -> None:
    body = {"kind": "PodList", "items": [{"metadata": {"name": "a"}}]}
    assert len(decode_manifest(json.dumps(body).encode()).pods) == 1


def test_v1_list_of_something_else_is_refused() -> None:
    body = {"kind": "List", "items": [{"kind": "Service"}]}
    with pytest.raises(DecodeError, match=r"items\[0\] is 'Service', not a Pod"):
        decode_manifest(json.dumps(body).encode())


def test_multi_document_yaml_skips_empty_documents() -> None:
    text = b"---\nkind: Pod\nmetadata: {name: a}\n---\n---\nkind: Pod\nmetadata: {name: b}\n"
    decoded = decode_manifest(text)
    assert [(p.document, p.data["metadata"]["name"]) for p in decoded.pods] == [(1, "a"), (3, "b")]
    assert decoded.pods[1].locate(decoded.documents) == "document 3"


def test_timestamps_stay_strings() -> None:
    decoded = decode_manifest(b"kind: Pod\nmetadata: {name: a, creationTimestamp: 2024-01-02T03:04:05Z}\n")
    assert decoded.pods[0].data["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"x" * (MAX_MANIFEST_BYTES + 1), "larger than 10 MiB"),
        (b"\x7fELF\x02\x01\x01\x00\x00", "binary data"),
        (b"\xff\xfe\xfa garbage", "not UTF-8"),
        (b"!!python/object/apply:os.system ['touch /tmp/pwned']", "is not allowed"),
        (b"kind: Pod\nx: !!python/name:os.system\n", "is not allowed"),
        (b"kind: Pod\nx: !!binary aGVsbG8=\n", "is not allowed"),
        (b"kind: Pod\nx: !!set {a, b}\n", "is not allowed"),
        (b"kind: Deployment\n", "kind 'Deployment' is not a Pod"),
        (b"metadata: {name: a}\n", "kind is missing"),
        (b"- a\n- b\n", "is a list, not an object"),
        (b"kind: Pod\n  bad: [\n", "invalid YAML"),
        (b'{"kind": "Pod",', "invalid JSON"),
        (b"[" * 100000, "invalid JSON|nests maps and lists more than 100 deep"),
    ],
    ids=["too-big", "elf", "not-utf8", "python-apply", "python-name", "binary-tag", "set-tag", "deployment",
         "no-kind", "list", "bad-yaml", "bad-json", "deep-json"],
)
def test_refused_with_a_clear_message(content: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_manifest(content)


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    previous = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    started = time.monotonic()
    with pytest.raises(DecodeError, match="alias bomb"):
        decode_manifest(("kind: Pod\n" + "\n".join(lines)).encode())
    assert time.monotonic() - started < 1.0


def test_ordinary_aliases_work() -> None:
    text = b"kind: Pod\nmetadata: {name: a, labels: &l {x: y}, annotations: *l}\n"
    assert decode_manifest(text).pods[0].data["metadata"]["annotations"] == {"x": "y"}


def test_duplicate_keys_are_warned_about() -> None:
    decoded = decode_manifest(b"kind: Pod\nmetadata: {name: a}\nmetadata: {name: b}\n")
    assert decoded.warnings == ["line 3: duplicate field 'metadata'"]


# Plain data survives a round trip through PyYAML's dumper and our loader exactly as through
# yaml.safe_load: the fast builder changes speed, not meaning.
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
_data = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=30)


@given(_data)
def test_loader_agrees_with_safe_load(data: object) -> None:
    text = yaml.safe_dump(data)
    assert list(load_documents(text, [])) == [yaml.safe_load(text)]


PLAIN_WORDS = [f"{word}{tail}" for word in ("yes", "no", "true", "false", "on", "off", "null", "y", "n", "name", "nginx",
                                            "offset", "nullable", "tier", "one")
               for tail in ("", "s", "-x", " x") for word in (word, word.capitalize(), word.upper())]


@pytest.mark.parametrize("word", sorted(set(PLAIN_WORDS)))
def test_plain_words_resolve_as_in_safe_load(word: str) -> None:
    """Booleans and nulls written plain (YAML 1.1: yes, Off, NULL, ...) are read as PyYAML reads them."""
    text = f"{word}: {word}\nlist: [{word}]\n"
    assert list(load_documents(text, [])) == [yaml.safe_load(text)]


def test_merge_keys_follow_yaml() -> None:
    text = "base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\nn: {<<: [*b, {z: 4}]}\n"
    assert list(load_documents(text, [])) == [yaml.safe_load(text)]


def test_a_node_that_contains_itself_is_refused() -> None:
    with pytest.raises(DecodeError, match="contains it"):
        decode_manifest(b"kind: Pod\nmetadata: &m {name: a, self: *m}\n")


def test_unknown_local_tags_are_refused() -> None:
    with pytest.raises(DecodeError, match="!custom is not allowed"):
        decode_manifest(b"kind: Pod\nmetadata: !custom {name: a}\n")
