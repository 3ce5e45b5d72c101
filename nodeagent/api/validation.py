"""Validate a decoded pod as the API server would, plus the rules for static pods.

Every problem is collected with its field path; nothing stops at the first. Container rules live in
nodeagent.api.validation_container.

    validate_pod(pod) -> [FieldError('spec.containers[1].name', 'Duplicate value: "c"'), ...]
"""

from __future__ import annotations

from nodeagent.api import names
from nodeagent.api.fielderrors import duplicate, forbidden, invalid, required, unsupported
from nodeagent.api.model import ObjectMeta, Pod, PodSpec
from nodeagent.api.model_volumes import Volume, unsupported_sources
from nodeagent.api.validation_container import validate_containers, validate_ids
from nodeagent.api.validation_downward import validate_downward_api, validate_projected
from nodeagent.api.validation_fields import validate_refused
from nodeagent.api.validation_resources import validate_pod_resources
from nodeagent.errors import FieldError

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice")
EMPTY_DIR_MEDIA = ("", "Memory", "HugePages")
FS_GROUP_CHANGE_POLICIES = ("OnRootMismatch", "Always")
MAX_ANNOTATIONS_BYTES = 256 * 1024
STATIC_POD_ONLY = "static pods run without an API server"


def validate_pod(pod: Pod) -> list[FieldError]:
    errors: list[FieldError] = []
    if pod.api_version not in (None, "v1"):
        errors.append(unsupported("apiVersion", pod.api_version, ["v1"]))
    errors += validate_metadata(pod.metadata)
    errors += validate_spec(pod.spec)
    errors += validate_refused(pod)
    return errors


def validate_metadata(meta: ObjectMeta) -> list[FieldError]:
    errors: list[FieldError] = []
    if not meta.name:
        errors.append(required("metadata.name", "name or generateName is required"))
    else:
        errors += [invalid("metadata.name", meta.name, p) for p in names.dns1123_subdomain(meta.name)]
    if meta.namespace:
        errors += [invalid("metadata.namespace", meta.namespace, p) for p in names.dns1123_label(meta.namespace)]
    if meta.uid is not None:
        errors += [invalid("metadata.uid", meta.uid, p) for p in names.pod_uid(meta.uid)]
    for key, value in (meta.labels or {}).items():
        path = f"metadata.labels.{key}"
        errors += [invalid(path, key, p) for p in names.qualified_name(key)]
        errors += [invalid(path, value, p) for p in names.label_value(value)]
    annotations = meta.annotations or {}
    for key in annotations:
        errors += [invalid(f"metadata.annotations.{key}", key, p) for p in names.qualified_name(key)]
    total = sum(len(k) + len(v) for k, v in annotations.items())
    if total > MAX_ANNOTATIONS_BYTES:
        errors.append(FieldError("metadata.annotations", f"Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"))
    return errors


def validate_spec(spec: PodSpec) -> list[FieldError]:
    errors: list[FieldError] = []
    volume_names, volume_errors = _validate_volumes(spec.volumes or [])
    errors += volume_errors
    if not spec.containers:
        errors.append(required("spec.containers"))
    errors += validate_containers(spec, volume_names)
    errors += validate_pod_resources(spec)
    if spec.restart_policy not in RESTART_POLICIES:
        errors.append(unsupported("spec.restartPolicy", spec.restart_policy, RESTART_POLICIES))
    if spec.dns_policy not in DNS_POLICIES:
        errors.append(unsupported("spec.dnsPolicy", spec.dns_policy, DNS_POLICIES))
    if spec.termination_grace_period_seconds < 0:
        errors.append(invalid("spec.terminationGracePeriodSeconds", spec.termination_grace_period_seconds,
                              "must be greater than or equal to 0"))
    if spec.share_process_namespace and spec.host_pid:
        errors.append(invalid("spec.shareProcessNamespace", True, "ShareProcessNamespace and HostPID cannot both be "
                                                                  "enabled"))
    if spec.active_deadline_seconds is not None and spec.active_deadline_seconds <= 0:
        errors.append(invalid("spec.activeDeadlineSeconds", spec.active_deadline_seconds,
                              "must be greater than 0"))
    security = spec.security_context
    if security is not None:
        ids = [("runAsUser", security.run_as_user), ("runAsGroup", security.run_as_group),
               ("fsGroup", security.fs_group),
               *((f"supplementalGroups[{i}]", gid) for i, gid in enumerate(security.supplemental_groups or []))]
        errors += validate_ids(ids, "spec.securityContext")
        policy = security.fs_group_change_policy
        if policy is not None and policy not in FS_GROUP_CHANGE_POLICIES:
            errors.append(unsupported("spec.securityContext.fsGroupChangePolicy", policy, FS_GROUP_CHANGE_POLICIES))
    if spec.hostname:
        errors += [invalid("spec.hostname", spec.hostname, p) for p in names.dns1123_label(spec.hostname)]
    for field, value in (("serviceAccountName", spec.service_account_name),
                         ("serviceAccount", spec.service_account)):
        if value:
            errors.append(forbidden(f"spec.{field}", f"a static pod may not reference service accounts "
                                                      f"({STATIC_POD_ONLY})"))
    return errors


def _validate_volumes(volumes: list[Volume]) -> tuple[set[str], list[FieldError]]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, volume in enumerate(volumes):
        path = f"spec.volumes[{index}]"
        if not volume.name:
            errors.append(required(f"{path}.name"))
        else:
            errors += [invalid(f"{path}.name", volume.name, p) for p in names.dns1123_label(volume.name)]
            if volume.name in seen:
                errors.append(duplicate(f"{path}.name", volume.name))
            seen.add(volume.name)
        errors += _validate_volume_source(volume, path)
    return seen, errors


def _validate_volume_source(volume: Volume, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if unsupported_sources(volume):
        return []  # refused, by validate_refused
    sources = [s for s in (volume.empty_dir, volume.host_path, volume.downward_api, volume.projected) if s is not None]
    if not sources:
        return [required(path, "must specify a volume type (emptyDir, hostPath, downwardAPI or projected)")]
    if len(sources) > 1:
        return [forbidden(f"{path}.hostPath", "may not specify more than 1 volume type")]
    if volume.downward_api is not None:
        errors += validate_downward_api(volume.downward_api, f"{path}.downwardAPI")
    if volume.projected is not None:
        errors += validate_projected(volume.projected, f"{path}.projected")
    if volume.empty_dir is not None:
        if volume.empty_dir.medium not in EMPTY_DIR_MEDIA:
            errors.append(unsupported(f"{path}.emptyDir.medium", volume.empty_dir.medium, EMPTY_DIR_MEDIA))
        limit = volume.empty_dir.size_limit
        if limit is not None and limit.amount < 0:
            errors.append(invalid(f"{path}.emptyDir.sizeLimit", str(limit), "must be greater than or equal to 0"))
    if volume.host_path is not None:
        host = volume.host_path
        if not host.path:
            errors.append(required(f"{path}.hostPath.path"))
        elif not host.path.startswith("/"):
            errors.append(invalid(f"{path}.hostPath.path", host.path, "must be an absolute path"))
        elif ".." in host.path.split("/"):
            errors.append(invalid(f"{path}.hostPath.path", host.path, "must not contain '..'"))
        if host.type not in HOST_PATH_TYPES:
            errors.append(unsupported(f"{path}.hostPath.type", host.type, HOST_PATH_TYPES))
    return errors
