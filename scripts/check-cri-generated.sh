#!/usr/bin/env bash
# Fail when the committed CRI Python differs from what scripts/gen-cri.sh generates now
# (an edited api.proto without regenerating, a hand edit, or another grpcio-tools/mypy-protobuf).
#   scripts/check-cri-generated.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$root/scripts/gen-cri.sh" "$tmp"
status=0
for file in api_pb2.py api_pb2.pyi api_pb2_grpc.py api_pb2_grpc.pyi; do
    if ! diff -u "$root/nodeagent/runtime/cri/$file" "$tmp/nodeagent/runtime/cri/$file" >&2; then
        status=1
    fi
done
if [ "$status" -ne 0 ]; then
    echo "check-cri-generated: nodeagent/runtime/cri is not what api.proto generates: run scripts/gen-cri.sh" >&2
fi
exit "$status"
