"""Find the fields a manifest sets that the model does not know, so typos never pass silently.

    find_unknown_fields(pod) -> [FieldError('spec.containers[0].resource',
                                            'unknown field "resource" (did you mean "resources"?)')]
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import get_args

from pydantic import BaseModel

from nodeagent.api.fielderrors import join_path
from nodeagent.errors import FieldError


def find_unknown_fields(model: BaseModel) -> list[FieldError]:
    found: list[FieldError] = []
    _walk(model, [], found)
    return found


def _walk(value: object, path: list[str | int], found: list[FieldError]) -> None:
    if isinstance(value, BaseModel):
        known, children = _shape(type(value))
        for key in value.model_extra or {}:
            found.append(FieldError(join_path([*path, key]), _describe(key, known)))
        for name, alias in children:
            child = getattr(value, name)
            if child is not None:
                _walk(child, [*path, alias], found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, [*path, index], found)


@cache
def _shape(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(the JSON names a model knows, the fields that can hold models), worked out once per class."""
    known = tuple(info.alias or name for name, info in model.model_fields.items())
    children = tuple(
        (name, info.alias or name)
        for name, info in model.model_fields.items()
        if _may_hold_model(info.annotation)
    )
    return known, children


def _may_hold_model(annotation: object) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_may_hold_model(arg) for arg in get_args(annotation))


def _describe(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    hint = f' (did you mean "{close[0]}"?)' if close else ""
    return f'unknown field "{key}"{hint}'
