"""The base of nodeagent's Pod models: Kubernetes' JSON names, strict types, quantities, field selectors.

nodeagent.api.model (the Pod) and nodeagent.api.model_volumes (its volumes) are built on it.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.alias_generators import to_camel

from nodeagent.api.quantity import Quantity, parse_quantity
from nodeagent.errors import NodeAgentError


def _to_quantity(raw: object) -> Quantity:
    if isinstance(raw, Quantity):
        return raw
    if not isinstance(raw, str | int | float):
        raise ValueError("quantities must be a string or a number")
    return parse_quantity(raw)


def is_quantity(raw: object) -> bool:
    try:
        _to_quantity(raw)
    except ValueError:
        return False
    return True


QuantityField = Annotated[
    Quantity, BeforeValidator(_to_quantity), PlainSerializer(str, return_type=str)
]
ResourceList = dict[str, QuantityField]
IntOrString = int | str


def validated_name(name: str | None, what: str) -> str:
    """The name of a container, volume or volumeMount of a validated pod: validation refuses one without a name,
    so from a StaticPod on it is never None. One that was never validated raises instead."""
    if name is None:
        raise NodeAgentError(f"{what} without a name: its pod was not validated")
    return name


class K8sModel(BaseModel):
    """Base: camelCase names only, strict types, immutable, unknown fields kept for warnings
    (and left out when the model is written back out, as an API server drops them)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        extra="allow",
        frozen=True,
        strict=True,
        arbitrary_types_allowed=True,
    )

    @model_serializer(mode="wrap")
    def _without_unknown_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if self.model_extra and isinstance(data, dict):
            for key in self.model_extra:
                data.pop(key, None)
        return data


class ObjectFieldSelector(K8sModel):
    field_path: str | None = None
    api_version: str | None = None


class ResourceFieldSelector(K8sModel):
    resource: str | None = None
    container_name: str | None = None
    divisor: QuantityField | None = None
