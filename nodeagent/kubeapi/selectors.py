"""Label and field selectors, as the API server parses and applies them to pods and events.

Labels: `a=b`, `a==b`, `a!=b`, `a in (b,c)`, `a notin (b)`, `a`, `!a`, comma-joined (all must hold).
Fields: `path=value`, `path==value`, `path!=value` over the dotted JSON paths the API server allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Match = Callable[[dict[str, Any]], bool]
_SET = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)\s*$")
_EXISTS = re.compile(r"^\s*(?P<not>!?)\s*(?P<key>[^\s!=(),]+)\s*$")
POD_FIELDS = ("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName")
EVENT_FIELDS = ("metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
                "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
                "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent",
                "source", "type")


class SelectorError(ValueError):
    pass


def _requirements(raw: str) -> list[str]:
    """Split at commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in raw:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def label_selector(raw: str) -> Match:
    checks: list[Match] = []
    for part in _requirements(raw):
        if m := _SET.match(part):
            checks.append(_in_set(m["key"], {v.strip() for v in m["values"].split(",") if v.strip()},
                                  inside=m["op"] == "in"))
        elif m := _EQ.match(part):
            checks.append(_equal(m["key"], m["value"], equal=m["op"] != "!="))
        elif m := _EXISTS.match(part):
            checks.append(_exists(m["key"], present=not m["not"]))
        else:
            raise SelectorError(f'unable to parse requirement: found \'{part.strip()}\', expected: in, notin, =, '
                                f'==, !=, gt, lt')
    return lambda obj: all(check(obj.get("metadata", {}).get("labels") or {}) for check in checks)


def field_selector(raw: str, allowed: tuple[str, ...], kind: str) -> Match:
    checks: list[Match] = []
    for part in _requirements(raw):
        m = _EQ.match(part)
        if m is None:
            raise SelectorError(f'invalid selector: \'{raw}\'; can\'t understand \'{part}\'')
        if m["key"] not in allowed:
            raise SelectorError(f'"{m["key"]}" is not a known field selector: only "{kind}" fields '
                                f'{", ".join(allowed)} are supported')
        checks.append(_field_equal(m["key"].split("."), m["value"], equal=m["op"] != "!="))
    return lambda obj: all(check(obj) for check in checks)


def _in_set(key: str, values: set[str], *, inside: bool) -> Match:
    return lambda labels: (labels.get(key) in values) == inside


def _equal(key: str, value: str, *, equal: bool) -> Match:
    return lambda labels: (labels.get(key) == value) == equal


def _exists(key: str, *, present: bool) -> Match:
    return lambda labels: (key in labels) == present


def _field_equal(path: list[str], value: str, *, equal: bool) -> Match:
    return lambda obj: (_field(obj, path) == value) == equal


def _field(obj: dict[str, Any], path: list[str]) -> str:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if path == ["source"] and isinstance(value, dict):
        value = value.get("component")
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def matcher(query: dict[str, str] | Any, fields: tuple[str, ...], kind: str) -> Match:
    """Both selectors of a request's query; SelectorError names what is wrong."""
    labels = label_selector(query.get("labelSelector", ""))
    by_field = field_selector(query.get("fieldSelector", ""), fields, kind)
    return lambda obj: labels(obj) and by_field(obj)
