"""The Kubernetes API subset for this node, served over HTTPS to kubectl and client libraries."""
