"""A pod's /etc/hosts and /etc/resolv.conf from its spec (hostAliases, dnsPolicy, dnsConfig), as the kubelet
gives them: nodeagent.network.dnsfiles words them, this module reads the PodSpec fields for it.

    etc_files(spec, "web", "10.88.0.7", node_resolv, node_hosts) -> (hosts text, resolv.conf text)
    etc_files(hostNetwork spec without aliases or dnsConfig, "web", None, ...) -> (None, None): the node's own
"""

from __future__ import annotations

from nodeagent.api.model import PodSpec
from nodeagent.network.dnsfiles import HostAliases, PodDNS, hosts_file, node_hosts_file, pod_dns, resolv_conf


def dns_config(spec: PodSpec) -> PodDNS | None:
    """spec.dnsConfig as CRI's DNSConfig parts (an option "name:value", or "name" without a value)."""
    config = spec.dns_config
    if config is None:
        return None
    options = tuple(f"{o.name}:{o.value}" if o.value is not None else o.name or "" for o in config.options or [])
    return PodDNS(tuple(config.nameservers or ()), tuple(config.searches or ()), options)


def host_aliases(spec: PodSpec) -> HostAliases:
    return tuple((alias.ip or "", tuple(alias.hostnames or ())) for alias in spec.host_aliases or [])


def pod_dns_of(spec: PodSpec, node_resolv: str) -> PodDNS:
    return pod_dns(spec.dns_policy, node_resolv, dns_config(spec))


def etc_files(spec: PodSpec, hostname: str, pod_ip: str | None, node_resolv: str,
              node_hosts: str) -> tuple[str | None, str | None]:
    """(/etc/hosts, /etc/resolv.conf) for the pod's containers; None where the node's own file serves (a
    hostNetwork pod without hostAliases, or without dnsConfig and dnsPolicy None)."""
    aliases = host_aliases(spec)
    if pod_ip is not None:
        return hosts_file(hostname, pod_ip, aliases), resolv_conf(spec.dns_policy, node_resolv, dns_config(spec))
    hosts = node_hosts_file(node_hosts, aliases) if aliases else None
    own_resolver = spec.dns_config is not None or spec.dns_policy == "None"
    resolv = resolv_conf(spec.dns_policy, node_resolv, dns_config(spec)) if own_resolver else None
    return hosts, resolv
