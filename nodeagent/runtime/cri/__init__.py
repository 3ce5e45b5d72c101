"""CRI client: talk to a runtime.v1 container runtime (containerd, CRI-O) over its gRPC socket."""
