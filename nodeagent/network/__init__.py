"""Pod networks for the process and runc runtimes: a network namespace per pod on a node bridge.

    networks = PodNetworks(state_dir=..., bridge="nodeagent0", pod_cidr="10.88.0.0/16")  # .pods
    pod = await networks.set_up(uid, name=..., namespace=..., host_ports=[HostPort(80, 8080, "TCP")])
    # run the containers in pod.netns (nsenter --net=<pod.netns>), podIP = pod.ip
    await networks.tear_down(uid)

Import from the modules: this package imports nothing, so that the pure parts (model, dnsfiles) come
without pyroute2.
"""
