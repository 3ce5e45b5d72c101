"""A pod's /etc/hosts and /etc/resolv.conf, worded as the kubelet writes them.

Pure: text in, text out; the runtime writes the files and mounts them over the container's.

    hosts_file("web", "10.88.0.7")  -> the localhost lines, then "10.88.0.7<TAB>web"
    node_hosts_file(node's, aliases) -> a hostNetwork pod's: the node's /etc/hosts, then the pod's hostAliases
    resolv_conf("Default", node's)  -> the node's nameservers (3 at most), search list and options
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

MAX_HOSTNAME_LEN = 63
MAX_NAMESERVERS = 3  # glibc's MAXNS, validation.MaxDNSNameservers
MAX_SEARCH_PATHS = 32  # the kubelet's limits on the search list
MAX_SEARCH_CHARS = 2048
HOST_NETWORK_HOSTS_HEADER = "# Kubernetes-managed hosts file (host network).\n"
HOSTS_HEADER = (
    "# Kubernetes-managed hosts file.\n"
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "fe00::0\tip6-mcastprefix\n"
    "fe00::1\tip6-allnodes\n"
    "fe00::2\tip6-allrouters\n"
)


def pod_hostname(pod_name: str) -> str:
    """The pod's host name: its name (or spec.hostname), cut to 63 characters without a trailing '-' or '.'."""
    if len(pod_name) <= MAX_HOSTNAME_LEN:
        return pod_name
    return pod_name[:MAX_HOSTNAME_LEN].rstrip("-.")


HostAliases = Sequence[tuple[str, Sequence[str]]]  # spec.hostAliases: (ip, host names)


def hosts_file(pod_name: str, ip: str, aliases: HostAliases = ()) -> str:
    """/etc/hosts for a pod: the localhost lines, "<ip>\\t<host name>", then its hostAliases."""
    return f"{HOSTS_HEADER}{ip}\t{pod_hostname(pod_name)}\n{_alias_lines(aliases)}"


def node_hosts_file(node_hosts: str, aliases: HostAliases) -> str:
    """/etc/hosts for a hostNetwork pod: the node's, then the pod's hostAliases (kubelet nodeHostsFileContent)."""
    return f"{HOST_NETWORK_HOSTS_HEADER}{node_hosts}{_alias_lines(aliases)}"


def _alias_lines(aliases: HostAliases) -> str:
    """The kubelet's hostsEntriesFromHostAliases: a blank line, a comment, "<ip>\\t<name>\\t<name>..." lines."""
    if not aliases:
        return ""
    lines = "".join(f"{ip}\t{chr(9).join(names)}\n" for ip, names in aliases)
    return f"\n# Entries added by HostAliases.\n{lines}"


@dataclass(frozen=True, slots=True)
class PodDNS:
    """A pod's resolver settings (CRI's DNSConfig), with notes on what was changed and why."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def pod_dns(dns_policy: str, node_resolv_conf: str, config: PodDNS | None = None) -> PodDNS:
    """A pod's resolver from the text of the node's resolv.conf and its spec.dnsConfig, as the kubelet makes it.

    Default: the node's nameservers, search list and options. ClusterFirst (and ClusterFirstWithHostNet,
    which is ClusterFirst for such a pod): nodeagent has no cluster DNS, so, as the kubelet without
    clusterDNS, the node's, with a note saying so. None: nothing from the node. dnsConfig is then appended
    (appendDNSConfig: nameservers and searches without duplicates, its options over the same-named ones)
    and the result cut to the kubelet's limits.
    """
    notes: list[str] = []
    if dns_policy == "None":
        nameservers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
        if config is None or not config.nameservers:
            notes.append("dnsPolicy None without dnsConfig: no nameserver")
    else:
        if dns_policy != "Default":
            notes.append(f'dnsPolicy {dns_policy}: there is no cluster DNS, so the node\'s resolver is used, as '
                         'the kubelet does without clusterDNS (it falls back to "Default")')
        nameservers, searches, options = _parse(node_resolv_conf)
    if config is not None:
        nameservers = list(dict.fromkeys([*nameservers, *config.nameservers]))
        searches = list(dict.fromkeys([*searches, *config.searches]))
        merged = {option.split(":", 1)[0]: option for option in [*options, *config.options]}
        options = list(merged.values())
    if len(nameservers) > MAX_NAMESERVERS:
        notes.append(f"the pod has {len(nameservers)} nameservers; the first {MAX_NAMESERVERS} are kept, as the "
                     f"kubelet does: {', '.join(nameservers[MAX_NAMESERVERS:])} omitted")
        nameservers = nameservers[:MAX_NAMESERVERS]
    notes += [f"nameserver {server} is a loopback address: in the pod's network namespace nothing answers there; "
              "point the node's resolvConf at a resolver on a real address (for systemd-resolved: "
              "/run/systemd/resolve/resolv.conf)" for server in nameservers if _is_loopback(server)]
    return PodDNS(tuple(nameservers), tuple(_fit_search(searches)), tuple(options), tuple(notes))


@functools.lru_cache(maxsize=64)  # a pure function of small values: a restart builds it once per kind of pod
def resolv_conf(dns_policy: str, node_resolv_conf: str, config: PodDNS | None = None) -> str:
    """/etc/resolv.conf for a pod without hostNetwork (pod_dns), its notes as comments."""
    dns = pod_dns(dns_policy, node_resolv_conf, config)
    lines = [f"# {note}" for note in dns.notes]
    lines += [f"nameserver {server}" for server in dns.nameservers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "".join(f"{line}\n" for line in lines)


def _parse(text: str) -> tuple[list[str], list[str], list[str]]:
    """Nameservers, search list and options, read as the kubelet reads resolv.conf (`domain` is ignored)."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: dict[str, str] = {}  # by option name: a later "ndots:2" replaces "ndots:5"
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            nameservers.append(fields[1])
        elif fields[0] == "search":
            searches = [path.removesuffix(".") for path in fields[1:] if path != "."]
        elif fields[0] == "options":
            for option in fields[1:]:
                options[option.split(":", 1)[0]] = option
    return nameservers, searches, list(options.values())


def _fit_search(searches: list[str]) -> list[str]:
    """The search list cut to the kubelet's limits (32 paths, 2048 characters)."""
    kept: list[str] = []
    for path in searches[:MAX_SEARCH_PATHS]:
        if len(" ".join([*kept, path])) > MAX_SEARCH_CHARS:
            break
        kept.append(path)
    return kept


def _is_loopback(server: str) -> bool:
    try:
        return ipaddress.ip_address(server).is_loopback
    except ValueError:
        return False
