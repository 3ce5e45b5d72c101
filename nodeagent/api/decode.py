"""Turn manifest bytes into raw pod documents, safely.

YAML goes through nodeagent.api.yamlload (PyYAML's C parser, plain data only), JSON through the
json module. A file may hold a Pod, a PodList, a `v1 List` of pods or several YAML
documents. Nothing is executed: tags other than YAML's plain types are refused. Hostile input is
bounded: at most 10 MiB, maps and lists nested at most MAX_NESTING deep (a pod needs about 15),
integers of at most MAX_INT_DIGITS digits.

    bytes --decode_manifest()--> [RawPod(where="items[1]", document=2, data={...}), ...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from nodeagent.api.yamlload import MAX_INT_DIGITS, YAMLLoadError, load_documents

MAX_MANIFEST_BYTES = 10 * 1024 * 1024
# Everything after decoding (validation, deep copies, the unknown-field walk) recurses into the data:
# the cap keeps that far from Python's recursion limit, whatever thread it runs in.
MAX_NESTING = 100


class DecodeError(ValueError):
    """The bytes are not a manifest; the message says why, without a traceback."""


@dataclass(frozen=True, slots=True)
class RawPod:
    """One pod object as decoded, with where it sat in its file."""

    data: dict[str, Any]
    document: int  # 1-based YAML document number
    where: str  # "" for a top-level Pod, "items[3]" for a list item

    def locate(self, documents: int) -> str:
        """A short location for messages: 'document 2, items[0]' (only the parts that tell)."""
        parts = [f"document {self.document}"] if documents > 1 else []
        if self.where:
            parts.append(self.where)
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Decoded:
    pods: list[RawPod]
    documents: int
    warnings: list[str]


def decode_manifest(content: bytes) -> Decoded:
    """Decode a manifest file's bytes into its pod documents, or raise DecodeError."""
    if len(content) > MAX_MANIFEST_BYTES:
        raise DecodeError(f"file is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB")
    if b"\x00" in content:
        raise DecodeError("binary data, not a YAML or JSON manifest")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not UTF-8 text (byte {exc.start})") from None

    warnings: list[str] = []
    is_json = text.lstrip().startswith(("{", "["))
    try:
        documents = [json.loads(text, parse_int=_json_int)] if is_json else list(load_documents(text, warnings))
    except json.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except yaml.MarkedYAMLError as exc:
        raise DecodeError(f"invalid YAML: {_describe_yaml_error(exc)}") from None
    except yaml.YAMLError as exc:
        raise DecodeError(f"invalid YAML: {exc}") from None
    except YAMLLoadError as exc:
        raise DecodeError(str(exc)) from None
    except RecursionError:
        raise DecodeError(f"a document nests maps and lists more than {MAX_NESTING} deep") from None

    pods: list[RawPod] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        if _nests_deeper(document, MAX_NESTING):
            raise DecodeError(f"document {number} nests maps and lists more than {MAX_NESTING} deep")
        pods.extend(_pods_of(document, number))
    return Decoded(pods=pods, documents=len(documents), warnings=warnings)


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DecodeError(f"a number has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _nests_deeper(document: Any, limit: int) -> bool:
    """Whether maps and lists nest more than `limit` deep (iterative: the check cannot recurse too far)."""
    level = [document] if isinstance(document, (dict, list)) else []
    for _ in range(limit):
        level = [child for value in level
                 for child in (value.values() if isinstance(value, dict) else value)
                 if isinstance(child, (dict, list))]
        if not level:
            return False
    return True


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or exc.context or "syntax error"
    if "could not determine a constructor" in problem:
        problem = f"tag {problem.split('tag ', 1)[-1]} is not allowed in a manifest"
    mark = exc.problem_mark or exc.context_mark
    return f"{problem} at line {mark.line + 1} column {mark.column + 1}" if mark else problem


def _pods_of(document: Any, number: int) -> list[RawPod]:
    if not isinstance(document, dict):
        raise DecodeError(f"document {number} is a {type(document).__name__}, not an object")
    kind = document.get("kind")
    if kind == "Pod":
        return [RawPod(data=document, document=number, where="")]
    if kind in ("PodList", "List"):
        items = document.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise DecodeError(f"document {number}: items must be a list")
        pods = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or item.get("kind", "Pod" if kind == "PodList" else None) != "Pod":
                found = item.get("kind") if isinstance(item, dict) else type(item).__name__
                raise DecodeError(f"document {number}: items[{index}] is {found!r}, not a Pod")
            pods.append(RawPod(data=item, document=number, where=f"items[{index}]"))
        return pods
    if kind is None:
        raise DecodeError(f"document {number}: kind is missing (want Pod, PodList or List)")
    raise DecodeError(f"document {number}: kind {kind!r} is not a Pod, PodList or List of pods")
