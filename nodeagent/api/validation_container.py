"""Validate containers and init containers: names, env, ports, resources, mounts, probes, hooks.

Kubernetes' rules and wording; the static-pod rule that nothing may need an API server.
"""

from __future__ import annotations

from collections.abc import Sequence

from nodeagent.api import names
from nodeagent.api.fielderrors import (
    duplicate,
    forbidden,
    invalid,
    not_found,
    required,
    unsupported,
)
from nodeagent.api.model import (
    Container,
    EnvVar,
    HTTPGetAction,
    Lifecycle,
    LifecycleHandler,
    PodSpec,
    Probe,
    SecurityContext,
)
from nodeagent.api.quantity import Quantity, parse_quantity
from nodeagent.api.signals import STOP_SIGNALS
from nodeagent.api.validation_resources import validate_resources
from nodeagent.errors import FieldError

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
PROC_MOUNTS = ("Default", "Unmasked")
PROTOCOLS = ("TCP", "UDP", "SCTP")
MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
SCHEMES = ("HTTP", "HTTPS")
FIELD_REF_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels",
                   "metadata.annotations", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
                   "status.hostIPs", "status.podIP", "status.podIPs")
# whole label and annotation maps go to volumes only; env takes one of them by subscript
ENV_FIELD_PATHS = tuple(p for p in FIELD_REF_PATHS if p not in ("metadata.labels", "metadata.annotations"))
RESOURCE_REF_NAMES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu",
                      "requests.memory", "requests.ephemeral-storage")
CPU_DIVISORS = ("1m", "1")
BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
STATIC_POD_ONLY = "static pods run without an API server"


def validate_containers(spec: PodSpec, volume_names: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    names = {c.name for c in [*(spec.init_containers or []), *(spec.containers or [])] if c.name}
    groups = (("spec.initContainers", spec.init_containers or []), ("spec.containers", spec.containers or []))
    for field, containers in groups:
        for index, container in enumerate(containers):
            path = f"{field}[{index}]"
            if container.name:
                if container.name in seen:
                    errors.append(duplicate(f"{path}.name", container.name))
                seen.add(container.name)
            errors += validate_container(container, path, volume_names=volume_names,
                                         host_network=spec.host_network,
                                         is_init=field == "spec.initContainers", container_names=names,
                                         os_name=spec.os.get("name") if isinstance(spec.os, dict) else None)
    return errors


def validate_container(
    container: Container, path: str, *, volume_names: set[str], host_network: bool, is_init: bool,
    container_names: set[str], os_name: str | None = None,
) -> list[FieldError]:
    errors: list[FieldError] = []
    if not container.name:
        errors.append(required(f"{path}.name"))
    else:
        errors += [invalid(f"{path}.name", container.name, p) for p in names.dns1123_label(container.name)]
    if not container.image or not container.image.strip():
        errors.append(required(f"{path}.image"))
    if container.image_pull_policy not in PULL_POLICIES:
        errors.append(unsupported(f"{path}.imagePullPolicy", container.image_pull_policy, PULL_POLICIES))
    if container.termination_message_policy not in MESSAGE_POLICIES:
        errors.append(unsupported(f"{path}.terminationMessagePolicy", container.termination_message_policy,
                                  MESSAGE_POLICIES))
    if container.env_from is not None:
        errors.append(forbidden(f"{path}.envFrom", f"a static pod may not reference configmaps or secrets "
                                                    f"({STATIC_POD_ONLY})"))
    for index, env in enumerate(container.env or []):
        errors += _validate_env(env, f"{path}.env[{index}]", container_names)
    errors += _validate_ports(container, path, host_network)
    errors += validate_resources(container.resources, f"{path}.resources")
    errors += _validate_mounts(container, path, volume_names)
    probes = (("livenessProbe", container.liveness_probe), ("readinessProbe", container.readiness_probe),
              ("startupProbe", container.startup_probe))
    regular_init = is_init and not container.is_sidecar
    sidecar_only = "may not be set for init containers without restartPolicy=Always"
    for field, probe in probes:
        if probe is None:
            continue
        if regular_init:
            errors.append(forbidden(f"{path}.{field}", sidecar_only))
        else:
            errors += _validate_probe(probe, f"{path}.{field}", readiness=field == "readinessProbe")
    if container.lifecycle is not None and regular_init:
        errors.append(forbidden(f"{path}.lifecycle", sidecar_only))
    elif container.lifecycle is not None:
        errors += _validate_lifecycle(container.lifecycle, f"{path}.lifecycle", os_name)
    if container.restart_policy is not None and not is_init:
        errors.append(forbidden(f"{path}.restartPolicy", "may not be set for non-init containers"))
    elif container.restart_policy not in (None, "Always"):
        errors.append(unsupported(f"{path}.restartPolicy", container.restart_policy, ["Always"]))
    if container.security_context is not None:
        errors += _validate_security(container.security_context, f"{path}.securityContext")
    return errors


def validate_ids(ids: list[tuple[str, int | None]], path: str) -> list[FieldError]:
    """User and group IDs, each {field: value}: Kubernetes' range."""
    return [invalid(f"{path}.{field}", value, "must be between 0 and 2147483647, inclusive")
            for field, value in ids if value is not None and not 0 <= value <= 2**31 - 1]


def _validate_security(security: SecurityContext, path: str) -> list[FieldError]:
    """The API server's ValidateSecurityContext: ID ranges, and no_new_privs that cannot hold."""
    errors = validate_ids([("runAsUser", security.run_as_user), ("runAsGroup", security.run_as_group)], path)
    if security.proc_mount is not None and security.proc_mount not in PROC_MOUNTS:
        errors.append(unsupported(f"{path}.procMount", security.proc_mount, PROC_MOUNTS))
    elif security.proc_mount == "Unmasked":  # a static pod has no user namespace: hostUsers is true
        errors.append(invalid(f"{path}.procMount", security.proc_mount, "`hostUsers` must be false to use "
                                                                        "`Unmasked`"))
    if security.allow_privilege_escalation is False:
        shown = security.model_dump(exclude_none=True)
        if security.privileged:
            errors.append(invalid(path, shown, "cannot set `allowPrivilegeEscalation` to false and `privileged` "
                                               "to true"))
        if "CAP_SYS_ADMIN" in (security.capabilities.add or [] if security.capabilities else []):
            errors.append(invalid(path, shown, "cannot set `allowPrivilegeEscalation` to false and "
                                               "`capabilities.Add` CAP_SYS_ADMIN"))
    return errors


def _validate_env(env: EnvVar, path: str, container_names: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    if not env.name:
        errors.append(required(f"{path}.name"))
    else:
        errors += [invalid(f"{path}.name", env.name, p) for p in names.env_var_name(env.name)]
    source = env.value_from
    if source is None:
        return errors
    if env.value:
        errors.append(invalid(f"{path}.valueFrom", "", "may not be specified when `value` is not empty"))
    refused = (("configMapKeyRef", source.config_map_key_ref, "configmaps"),
               ("secretKeyRef", source.secret_key_ref, "secrets"))
    for field, ref, kind in refused:
        if ref is not None:
            errors.append(forbidden(f"{path}.valueFrom.{field}",
                                    f"a static pod may not reference {kind} ({STATIC_POD_ONLY})"))
    chosen = [ref for ref in (source.field_ref, source.resource_field_ref) if ref is not None]
    if len(chosen) + sum(ref is not None for _, ref, _ in refused) == 0:
        errors.append(invalid(f"{path}.valueFrom", "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                                       "`configMapKeyRef` or `secretKeyRef`"))
    elif len(chosen) > 1:
        errors.append(invalid(f"{path}.valueFrom", "", "may not have more than one field specified at a time"))
    if source.field_ref is not None:
        errors += validate_field_path(source.field_ref.field_path, f"{path}.valueFrom.fieldRef.fieldPath",
                                      ENV_FIELD_PATHS)
    if source.resource_field_ref is not None:
        ref = source.resource_field_ref
        if not ref.resource:
            errors.append(required(f"{path}.valueFrom.resourceFieldRef.resource"))
        elif ref.resource not in RESOURCE_REF_NAMES:
            errors.append(unsupported(f"{path}.valueFrom.resourceFieldRef.resource", ref.resource,
                                      RESOURCE_REF_NAMES))
        if ref.divisor is not None and ref.resource in RESOURCE_REF_NAMES:
            errors += _validate_divisor(ref.resource, ref.divisor, f"{path}.valueFrom.resourceFieldRef.divisor")
        if ref.container_name and ref.container_name not in container_names:
            errors.append(invalid(f"{path}.valueFrom.resourceFieldRef.containerName", ref.container_name,
                                  "must be the name of a container in the pod"))
    return errors


def _validate_divisor(resource: str, divisor: Quantity, path: str) -> list[FieldError]:
    """Kubernetes allows only these divisors (validContainerResourceDivisorFor*)."""
    allowed = CPU_DIVISORS if resource.endswith(".cpu") else BYTE_DIVISORS
    if any(parse_quantity(choice) == divisor for choice in allowed):
        return []
    kind = resource.split(".", 1)[1]
    return [invalid(path, str(divisor), f"only divisor's values {', '.join(allowed)} are supported with the "
                                        f"{kind} resource")]


def validate_field_path(field_path: str | None, path: str, allowed: Sequence[str]) -> list[FieldError]:
    """A fieldRef's fieldPath (env or a downwardAPI volume): one of `allowed`, or one label or annotation
    (`metadata.labels['key']`)."""
    if not field_path:
        return [required(path)]
    base, _, subscript = field_path.partition("[")
    if subscript:
        if base not in ("metadata.labels", "metadata.annotations"):
            return [invalid(path, field_path, "fieldPath with a subscript is only supported for labels and "
                                              "annotations")]
        key = subscript.removesuffix("]").strip("'")
        return [invalid(path, field_path, p) for p in names.qualified_name(key)]
    if field_path not in allowed:
        return [unsupported(path, field_path, allowed)]
    return []


def _validate_ports(container: Container, path: str, host_network: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    port_names: set[str] = set()
    for index, port in enumerate(container.ports or []):
        where = f"{path}.ports[{index}]"
        if port.name:
            errors += [invalid(f"{where}.name", port.name, p) for p in names.port_name(port.name)]
            if port.name in port_names:
                errors.append(duplicate(f"{where}.name", port.name))
            port_names.add(port.name)
        if port.container_port is None or port.container_port == 0:
            errors.append(required(f"{where}.containerPort"))
        elif not 1 <= port.container_port <= 65535:
            errors.append(invalid(f"{where}.containerPort", port.container_port,
                                  "must be between 1 and 65535, inclusive"))
        if port.host_port is not None and port.host_port != 0:
            if not 1 <= port.host_port <= 65535:
                errors.append(invalid(f"{where}.hostPort", port.host_port, "must be between 1 and 65535, inclusive"))
            elif host_network and port.host_port != port.container_port:
                errors.append(invalid(f"{where}.hostPort", port.host_port,
                                      "must match `containerPort` when `hostNetwork` is true"))
        if port.protocol not in PROTOCOLS:
            errors.append(unsupported(f"{where}.protocol", port.protocol, PROTOCOLS))
    return errors


def _validate_mounts(container: Container, path: str, volume_names: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    mount_paths: set[str] = set()
    for index, mount in enumerate(container.volume_mounts or []):
        where = f"{path}.volumeMounts[{index}]"
        if not mount.name:
            errors.append(required(f"{where}.name"))
        elif mount.name not in volume_names:
            errors.append(not_found(f"{where}.name", mount.name))
        if not mount.mount_path:
            errors.append(required(f"{where}.mountPath"))
        else:
            if not mount.mount_path.startswith("/"):
                errors.append(invalid(f"{where}.mountPath", mount.mount_path, "must be an absolute path"))
            elif ".." in mount.mount_path.split("/"):
                errors.append(invalid(f"{where}.mountPath", mount.mount_path, "must not contain '..'"))
            if mount.mount_path in mount_paths:
                errors.append(invalid(f"{where}.mountPath", mount.mount_path, "must be unique"))
            mount_paths.add(mount.mount_path)
        if mount.sub_path:
            if mount.sub_path.startswith("/"):
                errors.append(invalid(f"{where}.subPath", mount.sub_path, "must be a relative path"))
            if ".." in mount.sub_path.split("/"):
                errors.append(invalid(f"{where}.subPath", mount.sub_path, "must not contain '..'"))
    return errors


def _validate_probe(probe: Probe, path: str, *, readiness: bool) -> list[FieldError]:
    errors = _validate_handler((probe.exec, probe.http_get, probe.tcp_socket, probe.grpc), path)
    if probe.http_get is not None:
        errors += _validate_http_get(probe.http_get, f"{path}.httpGet")
    if probe.tcp_socket is not None:
        errors += _validate_port(probe.tcp_socket.port, f"{path}.tcpSocket.port")
    if probe.grpc is not None:
        errors += _validate_port(probe.grpc.port, f"{path}.grpc.port")
    for field, value, least in (("initialDelaySeconds", probe.initial_delay_seconds, 0),
                                ("timeoutSeconds", probe.timeout_seconds, 1),
                                ("periodSeconds", probe.period_seconds, 1),
                                ("successThreshold", probe.success_threshold, 1),
                                ("failureThreshold", probe.failure_threshold, 1)):
        if value < least:
            errors.append(invalid(f"{path}.{field}", value, f"must be greater than or equal to {least}"))
    if not readiness and probe.success_threshold != 1:
        errors.append(invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1"))
    grace = probe.termination_grace_period_seconds
    if grace is not None and grace <= 0:
        errors.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0"))
    if grace is not None and readiness:
        errors.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must not be set for readinessProbes"))
    return errors


def _validate_lifecycle(lifecycle: Lifecycle, path: str, os_name: str | None) -> list[FieldError]:
    errors: list[FieldError] = []
    for field, handler in (("postStart", lifecycle.post_start), ("preStop", lifecycle.pre_stop)):
        if handler is not None:
            errors += _validate_hook(handler, f"{path}.{field}")
    if lifecycle.stop_signal is not None:  # the API server's validateContainerStopSignal (os.name linux)
        if os_name is None:
            errors.append(forbidden(f"{path}.stopSignal", "may not be set for containers with empty `spec.os.name`"))
        elif lifecycle.stop_signal not in STOP_SIGNALS:
            errors.append(unsupported(f"{path}.stopSignal", lifecycle.stop_signal, sorted(STOP_SIGNALS)))
    return errors


def _validate_hook(handler: LifecycleHandler, path: str) -> list[FieldError]:
    errors = _validate_handler((handler.exec, handler.http_get, handler.tcp_socket, handler.sleep), path)
    if handler.exec is not None and not handler.exec.command:
        errors.append(required(f"{path}.exec.command"))
    if handler.http_get is not None:
        errors += _validate_http_get(handler.http_get, f"{path}.httpGet")
    if handler.tcp_socket is not None:
        errors += _validate_port(handler.tcp_socket.port, f"{path}.tcpSocket.port")
    if handler.sleep is not None and (handler.sleep.seconds is None or handler.sleep.seconds <= 0):
        errors.append(invalid(f"{path}.sleep.seconds", handler.sleep.seconds, "must be greater than 0"))
    return errors


def _validate_handler(handlers: tuple[object, ...], path: str) -> list[FieldError]:
    count = sum(handler is not None for handler in handlers)
    if count == 0:
        return [required(path, "must specify a handler type")]
    if count > 1:
        return [forbidden(path, "may not specify more than 1 handler type")]
    return []


def _validate_http_get(action: HTTPGetAction, path: str) -> list[FieldError]:
    errors = _validate_port(action.port, f"{path}.port")
    if action.scheme not in SCHEMES:
        errors.append(unsupported(f"{path}.scheme", action.scheme, SCHEMES))
    return errors


def _validate_port(port: int | str | None, path: str) -> list[FieldError]:
    if port is None:
        return [required(path)]
    if isinstance(port, int):
        if not 1 <= port <= 65535:
            return [invalid(path, port, "must be between 1 and 65535, inclusive")]
        return []
    return [invalid(path, port, p) for p in names.port_name(port)]
