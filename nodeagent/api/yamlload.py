"""Load YAML documents as plain data with PyYAML's C parser: safely, and faster than yaml.safe_load.

PyYAML's C loader still resolves and constructs every node in Python. Manifests are mostly plain
strings, maps and lists, so those are resolved and built here in one tight pass; anything else
(numbers, booleans, nulls, merge keys) goes to PyYAML's SafeConstructor. On top of safe_load:

- only plain data: a tag that would build anything else (`!!python/...`, `!!binary`, `!!set`,
  custom tags) is refused; timestamps stay strings, as Kubernetes' YAML reader sees them;
- duplicate keys are reported, not silently overwritten;
- an integer of more than MAX_INT_DIGITS digits is refused (Python would raise past 4300);
- a document that contains itself, and one whose aliases expand past a budget of nodes (an alias
  bomb), are refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

MAX_EXPANDED_NODES = 500_000
MAX_INT_DIGITS = 100  # an int64 has 19

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
# A plain scalar can be other than a string only if it starts with one of these (numbers, timestamps, nulls,
# merge keys), or if it is one of the words PyYAML reads as a boolean or a null (its resolvers for the
# letters y, n, t, f, o match exactly these): "name" or "nginx" need no regular expression.
_MAYBE_NOT_STR = frozenset("~0123456789+-.<=")
_NOT_STR_WORDS = frozenset(("yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
                            "on", "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL"))


class YAMLLoadError(ValueError):
    """A document that is not plain data, or that expands beyond reason."""


class _Loader(yaml.CSafeLoader):
    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if not implicit[0] or (value and value[0] not in _MAYBE_NOT_STR and value not in _NOT_STR_WORDS):
                return _STR
        elif kind is yaml.MappingNode:  # asked only of untagged collections; no path resolvers are registered
            return _MAP
        elif kind is yaml.SequenceNode:
            return _SEQ
        return super().resolve(kind, value, implicit)  # type: ignore[no-any-return,no-untyped-call]


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


def _refuse(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise YAMLLoadError(f"line {node.start_mark.line + 1}: tag {node.tag} is not allowed in a manifest")


def _bounded_int(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    if len(node.value) > MAX_INT_DIGITS:
        raise YAMLLoadError(f"line {node.start_mark.line + 1}: a number has more than {MAX_INT_DIGITS} digits")
    return loader.construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
for _tag in ("binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)
_Loader.add_constructor(None, _refuse)  # any tag SafeLoader has no constructor for


def load_documents(text: str, warnings: list[str]) -> Iterator[Any]:
    """Each document of `text` as plain Python data; duplicate keys are appended to `warnings`."""
    loader = _Loader(text)
    may_alias = "*" in text  # without an alias nothing can expand, and the count is skipped
    may_merge = "<<" in text
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if may_alias and _expanded_size(node, {}) > MAX_EXPANDED_NODES:
                raise YAMLLoadError(
                    f"document expands to more than {MAX_EXPANDED_NODES} nodes through aliases (alias bomb?)")
            yield _Builder(loader, warnings, may_merge=may_merge).build(node)
    finally:
        loader.dispose()


class _Builder:
    """Nodes to data; a shared (aliased) node is built once and shared, as PyYAML does."""

    def __init__(self, loader: _Loader, warnings: list[str], *, may_merge: bool) -> None:
        self.loader = loader
        self.may_merge = may_merge  # a merge key is written `<<`: without one in the text, none is looked for
        self.warnings = warnings
        self.built: dict[int, Any] = {}
        self.building: set[int] = set()

    def build(self, node: yaml.Node) -> Any:
        if node.tag == _STR and isinstance(node, yaml.ScalarNode):
            return node.value
        key = id(node)
        if key in self.built:
            return self.built[key]
        if key in self.building:
            raise YAMLLoadError(f"line {node.start_mark.line + 1}: an alias refers to the node that contains it")
        self.building.add(key)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP and not (self.may_merge and _has_merge(node)):
            value: Any = self._mapping(node)
        elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            value = [self.build(child) for child in node.value]
        else:
            value = self.loader.construct_object(node, deep=True)
        self.building.discard(key)
        self.built[key] = value
        return value

    def _mapping(self, node: yaml.MappingNode) -> dict[Any, Any]:
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.build(key_node)
            try:
                duplicate = key in mapping
            except TypeError:
                raise YAMLLoadError(f"line {key_node.start_mark.line + 1}: a key must be a string") from None
            if duplicate:
                self.warnings.append(f"line {key_node.start_mark.line + 1}: duplicate field {key!r}")
            mapping[key] = self.build(value_node)
        return mapping


def _has_merge(node: yaml.MappingNode) -> bool:
    return any(key.tag == _MERGE for key, _ in node.value)


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Nodes as aliases would expand them, each shared node counted once and then reused."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    sizes[id(node)] = 1  # a node that contains itself counts once here; the builder refuses it
    size = 1
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    for child in children:
        size += _expanded_size(child, sizes)
        if size > MAX_EXPANDED_NODES:
            break
    sizes[id(node)] = size
    return size
