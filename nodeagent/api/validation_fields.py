"""The Pod fields nodeagent refuses, and the values of the newer PodSpec and securityContext fields, checked
as the API server checks them.

Every field of the v1 Pod API is either honoured, refused here (the pod is rejected with the field named and
why), refused when its container would start (nodeagent.agent.security: what depends on the runtime or the
node), or accepted quietly where the kubelet itself ignores it for a static pod (docs/fidelity.md).

    validate_refused(pod) -> [FieldError('spec.shareProcessNamespace', 'Forbidden: not supported by ...'), ...]
"""

from __future__ import annotations

import ipaddress

from nodeagent.api import names
from nodeagent.api.fielderrors import forbidden, invalid, required, unsupported
from nodeagent.api.model import AppArmorProfile, Container, Pod, PodSpec, SeccompProfile
from nodeagent.api.model_volumes import UNSUPPORTED_VOLUME_SOURCES, Volume, unsupported_sources
from nodeagent.api.sysctls import validate_sysctls
from nodeagent.errors import FieldError

NOT_YET = "not supported by nodeagent yet"
NO_API_SERVER = "static pods run without an API server"
PROFILE_TYPES = ("Localhost", "RuntimeDefault", "Unconfined")
SUPPLEMENTAL_GROUPS_POLICIES = ("Merge", "Strict")
SELINUX_CHANGE_POLICIES = ("MountOption", "Recursive")
MOUNT_PROPAGATIONS = ("None", "HostToContainer", "Bidirectional")
MAX_HOST_ALIAS_NAMES = 1000  # no API limit; a bound for /etc/hosts


def validate_refused(pod: Pod) -> list[FieldError]:
    spec = pod.spec
    errors: list[FieldError] = []
    if pod.metadata.deletion_grace_period_seconds is not None:
        errors.append(forbidden("metadata.deletionGracePeriodSeconds", NOT_YET))
    set_fields = (
        ("ephemeralContainers", spec.ephemeral_containers,
         f"ephemeral containers are added through the API ({NO_API_SERVER})"),
        ("resourceClaims", spec.resource_claims, f"resource claims need the API's DRA ({NO_API_SERVER})"),
        ("readinessGates", spec.readiness_gates, f"nothing could set their conditions ({NO_API_SERVER})"),
        ("setHostnameAsFQDN", spec.set_hostname_as_fqdn, NOT_YET),
        ("hostnameOverride", spec.hostname_override, NOT_YET),
        ("runtimeClassName", spec.runtime_class_name,
         "nodeagent has no RuntimeClasses: each node runs one runtime, chosen in its configuration"),
    )
    errors += [forbidden(f"spec.{field}", why) for field, value, why in set_fields if value]
    if spec.host_users is False:
        errors.append(forbidden("spec.hostUsers", f"user namespaces are {NOT_YET}"))
    if isinstance(spec.os, dict) and spec.os.get("name") != "linux":
        errors.append(forbidden("spec.os.name", f"the pod is for {spec.os.get('name')!r}; this node runs linux"))
    for index, volume in enumerate(spec.volumes or []):
        errors += _refused_volume(volume, f"spec.volumes[{index}]")
    errors += _validate_dns(spec)
    errors += _validate_pod_security(spec)
    for kind, containers in (("initContainers", spec.init_containers), ("containers", spec.containers)):
        for index, container in enumerate(containers or []):
            errors += _refused_container(container, f"spec.{kind}[{index}]")
    return errors


def _refused_volume(volume: Volume, path: str) -> list[FieldError]:
    errors = [forbidden(f"{path}.{field}", f"{field} volumes: {UNSUPPORTED_VOLUME_SOURCES[field]}"
                        if UNSUPPORTED_VOLUME_SOURCES[field] != "needs an API server"
                        else f"a static pod may not reference {field} volumes ({NO_API_SERVER})")
              for field in unsupported_sources(volume)]
    if volume.empty_dir is not None and volume.empty_dir.medium.startswith("HugePages"):
        errors.append(forbidden(f"{path}.emptyDir.medium", f"hugetlbfs emptyDirs are {NOT_YET}"))
    return errors


def _validate_dns(spec: PodSpec) -> list[FieldError]:
    errors: list[FieldError] = []
    config = spec.dns_config
    if spec.dns_policy == "None" and (config is None or not config.nameservers):
        errors.append(required("spec.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None")
                      if config is None else
                      required("spec.dnsConfig.nameservers",
                               "must provide at least one DNS nameserver when `dnsPolicy` is None"))
    if config is not None:
        if len(config.nameservers or []) > 3:
            errors.append(invalid("spec.dnsConfig.nameservers", config.nameservers,
                                  "must not have more than 3 nameservers"))
        for index, option in enumerate(config.options or []):
            if not option.name:
                errors.append(required(f"spec.dnsConfig.options[{index}].name"))
    for index, alias in enumerate(spec.host_aliases or []):
        path = f"spec.hostAliases[{index}]"
        if not alias.ip or not _is_ip(alias.ip):
            errors.append(invalid(f"{path}.ip", alias.ip, "must be a valid IP address"))
        hostnames = alias.hostnames or []
        if len(hostnames) > MAX_HOST_ALIAS_NAMES:
            errors.append(invalid(f"{path}.hostnames", len(hostnames), f"must have at most {MAX_HOST_ALIAS_NAMES}"))
        for number, hostname in enumerate(hostnames[:MAX_HOST_ALIAS_NAMES]):
            errors += [invalid(f"{path}.hostnames[{number}]", hostname, p) for p in names.dns1123_subdomain(hostname)]
    return errors


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _validate_pod_security(spec: PodSpec) -> list[FieldError]:
    context = spec.security_context
    if context is None:
        return []
    path = "spec.securityContext"
    errors = _validate_profiles(context.seccomp_profile, context.app_armor_profile, path)
    policy = context.supplemental_groups_policy
    if policy is not None and policy not in SUPPLEMENTAL_GROUPS_POLICIES:
        errors.append(unsupported(f"{path}.supplementalGroupsPolicy", policy, SUPPLEMENTAL_GROUPS_POLICIES))
    elif policy == "Strict":
        errors.append(forbidden(f"{path}.supplementalGroupsPolicy", f"Strict is {NOT_YET}"))
    change = context.se_linux_change_policy
    if change is not None and change not in SELINUX_CHANGE_POLICIES:
        errors.append(unsupported(f"{path}.seLinuxChangePolicy", change, SELINUX_CHANGE_POLICIES))
    errors += validate_sysctls(spec)
    return errors


def _validate_profiles(seccomp: SeccompProfile | None, apparmor: AppArmorProfile | None,
                       path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for field, profile in (("seccompProfile", seccomp), ("appArmorProfile", apparmor)):
        if profile is None:
            continue
        where = f"{path}.{field}"
        if profile.type is None:
            errors.append(required(f"{where}.type"))
        elif profile.type not in PROFILE_TYPES:
            errors.append(unsupported(f"{where}.type", profile.type, PROFILE_TYPES))
        elif profile.type == "Localhost" and not profile.localhost_profile:
            errors.append(required(f"{where}.localhostProfile", "must be set when profile type is Localhost"))
        elif profile.type != "Localhost" and profile.localhost_profile is not None:
            errors.append(invalid(f"{where}.localhostProfile", profile.localhost_profile,
                                  "can only be set when profile type is Localhost"))
        elif profile.localhost_profile is not None and (
                profile.localhost_profile.startswith("/") or ".." in profile.localhost_profile.split("/")):
            errors.append(invalid(f"{where}.localhostProfile", profile.localhost_profile,
                                  "must be a relative path without '..'"))
    return errors


def _refused_container(container: Container, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for field, value, why in (("restartPolicyRules", container.restart_policy_rules, NOT_YET),
                              ("volumeDevices", container.volume_devices,
                               f"block devices come from persistent volume claims ({NO_API_SERVER})"),
                              ("resources.claims", container.resources.claims,
                               f"resource claims need the API's DRA ({NO_API_SERVER})")):
        if value:
            errors.append(forbidden(f"{path}.{field}", why))
    privileged = bool(container.security_context and container.security_context.privileged)
    for index, mount in enumerate(container.volume_mounts or []):
        propagation = mount.mount_propagation
        where = f"{path}.volumeMounts[{index}].mountPropagation"
        if propagation is not None and propagation not in MOUNT_PROPAGATIONS:
            errors.append(unsupported(where, propagation, MOUNT_PROPAGATIONS))
        elif propagation == "Bidirectional" and not privileged:
            errors.append(forbidden(where, "Bidirectional mount propagation is available only to privileged "
                                           "containers"))
    context = container.security_context
    if context is not None:
        where = f"{path}.securityContext"
        errors += _validate_profiles(context.seccomp_profile, context.app_armor_profile, where)
    return errors
