"""Pod networking for the process and runc runtimes: a network namespace per pod on a node bridge.

    networks = PodNetworks(state_dir=..., bridge="nodeagent0", pod_cidr="10.88.0.0/16")
    pod = await networks.set_up(uid, name=..., namespace=..., host_ports=[HostPort(80, 8080, "TCP")])
    # run the containers in pod.netns (nsenter --net=<pod.netns>), podIP = pod.ip
    await networks.tear_down(uid)
"""

from nodeagent.network.dnsfiles import PodDNS, hosts_file, pod_dns, pod_hostname, resolv_conf
from nodeagent.network.errors import (
    AddressesExhaustedError,
    HostPortConflictError,
    LeaseFileError,
    NetlinkOperationError,
    NetworkError,
    NftablesError,
)
from nodeagent.network.model import HostPort, PodNetwork
from nodeagent.network.namespaces import ip_forward_enabled
from nodeagent.network.pods import PodNetworks

__all__ = [
    "AddressesExhaustedError",
    "HostPort",
    "HostPortConflictError",
    "LeaseFileError",
    "NetlinkOperationError",
    "NetworkError",
    "NftablesError",
    "PodDNS",
    "PodNetwork",
    "PodNetworks",
    "hosts_file",
    "ip_forward_enabled",
    "pod_dns",
    "pod_hostname",
    "resolv_conf",
]
