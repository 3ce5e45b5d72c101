"""Field errors worded as Kubernetes' apimachinery field.Error, and pydantic's errors translated to them.

    invalid("spec.restartPolicy", "Sometimes", "...")  ->  'spec.restartPolicy: Invalid value: "Sometimes": ...'
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from pydantic import ValidationError

from nodeagent.errors import FieldError


def render_value(value: object) -> str:
    """A value as Kubernetes prints it in an error: strings quoted, numbers bare, long ones cut."""
    text = json.dumps(value, default=str) if isinstance(value, str | bool) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, "Required value" + (f": {detail}" if detail else ""))


def invalid(path: str, value: object, detail: str) -> FieldError:
    return FieldError(path, f"Invalid value: {render_value(value)}: {detail}")


def duplicate(path: str, value: object) -> FieldError:
    return FieldError(path, f"Duplicate value: {render_value(value)}")


def not_found(path: str, value: object) -> FieldError:
    return FieldError(path, f"Not found: {render_value(value)}")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, f"Forbidden: {detail}")


def unsupported(path: str, value: object, supported: Iterable[str]) -> FieldError:
    choices = ", ".join(json.dumps(s) for s in sorted(supported))
    return FieldError(path, f"Unsupported value: {render_value(value)}: supported values: {choices}")


def join_path(parts: Sequence[str | int]) -> str:
    """('spec', 'containers', 0, 'name') -> 'spec.containers[0].name'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


_TYPE_WORDS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "bool_type": "must be a boolean",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
}


def from_validation_error(error: ValidationError) -> list[tuple[tuple[str | int, ...], FieldError]]:
    """pydantic's type errors as field errors, one per field, each with the location it came from."""
    found: dict[str, tuple[tuple[str | int, ...], FieldError]] = {}
    for item in error.errors(include_url=False):
        parts = tuple(p for p in item["loc"] if not _is_union_branch(p))
        path = join_path(parts)
        kind = item["type"]
        if path in found:
            continue  # a union reports one error per branch: the first says enough
        if kind in _TYPE_WORDS:
            found[path] = parts, invalid(path, item["input"], _TYPE_WORDS[kind])
        elif kind == "value_error":
            found[path] = parts, FieldError(path, str(item["ctx"].get("error", item["msg"])))
        else:
            found[path] = parts, FieldError(path, item["msg"])
    return list(found.values())


def _is_union_branch(part: str | int) -> bool:
    # pydantic names the branch of a union it tried ("str", "int", "is-instance[Quantity]").
    return isinstance(part, str) and (part in ("str", "int", "float", "bool") or "[" in part)
