"""A downwardAPI volume's items, checked as the API server checks them (validateDownwardAPIVolumeSource)."""

from __future__ import annotations

from nodeagent.api.fielderrors import duplicate, forbidden, invalid, required, unsupported
from nodeagent.api.model_volumes import DownwardAPIVolumeSource, ProjectedVolumeSource
from nodeagent.api.validation_container import RESOURCE_REF_NAMES, validate_field_path
from nodeagent.errors import FieldError

VOLUME_FIELD_PATHS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid")
MAX_MODE = 0o777


def validate_downward_api(source: DownwardAPIVolumeSource, path: str) -> list[FieldError]:
    errors = _mode(source.default_mode, f"{path}.defaultMode")
    seen: set[str] = set()
    for index, item in enumerate(source.items or []):
        where = f"{path}.items[{index}]"
        errors += _local_path(item.path, f"{where}.path")
        if item.path in seen:
            errors.append(duplicate(f"{where}.path", item.path))
        seen.add(item.path or "")
        if item.mode is not None:
            errors += _mode(item.mode, f"{where}.mode")
        if (item.field_ref is None) == (item.resource_field_ref is None):
            errors.append(invalid(where, "", "fieldRef and resourceFieldRef can not be specified simultaneously")
                          if item.field_ref else required(where, "one of fieldRef and resourceFieldRef is required"))
        elif item.field_ref is not None:
            errors += validate_field_path(item.field_ref.field_path, f"{where}.fieldRef.fieldPath", VOLUME_FIELD_PATHS)
        elif item.resource_field_ref is not None:
            ref = item.resource_field_ref
            if not ref.container_name:
                errors.append(required(f"{where}.resourceFieldRef.containerName"))
            if ref.resource not in RESOURCE_REF_NAMES:
                errors.append(unsupported(f"{where}.resourceFieldRef.resource", ref.resource, RESOURCE_REF_NAMES))
    return errors


def validate_projected(source: ProjectedVolumeSource, path: str) -> list[FieldError]:
    """Only downwardAPI sources can be projected here: the others need an API server (configMap, secret,
    serviceAccountToken, clusterTrustBundle, podCertificate). Paths must not collide across sources."""
    errors = _mode(source.default_mode, f"{path}.defaultMode")
    seen: set[str] = set()
    for index, projection in enumerate(source.sources or []):
        where = f"{path}.sources[{index}]"
        for field, value in (("configMap", projection.config_map), ("secret", projection.secret),
                             ("serviceAccountToken", projection.service_account_token),
                             ("clusterTrustBundle", projection.cluster_trust_bundle),
                             ("podCertificate", projection.pod_certificate)):
            if value is not None:
                errors.append(forbidden(f"{where}.{field}", f"a static pod may not project {field} "
                                                            "(static pods run without an API server)"))
        if projection.downward_api is not None:
            items = DownwardAPIVolumeSource.model_construct(items=projection.downward_api.items,
                                                           default_mode=source.default_mode)
            errors += validate_downward_api(items, f"{where}.downwardAPI")
            for number, item in enumerate(projection.downward_api.items or []):
                if item.path in seen:
                    errors.append(invalid(f"{where}.downwardAPI.items[{number}].path", item.path,
                                          "conflicting duplicate paths"))
                seen.add(item.path or "")
    return errors


def _mode(mode: int, path: str) -> list[FieldError]:
    if not 0 <= mode <= MAX_MODE:
        return [invalid(path, mode, "must be a number between 0 and 0777 (octal), both inclusive")]
    return []


def _local_path(value: str | None, path: str) -> list[FieldError]:
    if not value:
        return [required(path)]
    if value.startswith("/"):
        return [invalid(path, value, "must be a relative path")]
    if ".." in value.split("/"):
        return [invalid(path, value, "must not contain '..'")]
    if value.startswith(".."):
        return [invalid(path, value, "must not start with '..'")]
    return []
