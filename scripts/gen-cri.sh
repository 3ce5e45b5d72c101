#!/usr/bin/env bash
# Generate the Python for nodeagent's CRI subset (nodeagent/runtime/cri/api.proto) with fixed flags:
# api_pb2.py (protobuf), api_pb2_grpc.py (grpcio-tools), and typed stubs api_pb2.pyi and
# api_pb2_grpc.pyi (mypy-protobuf: sync and grpc.aio stubs). The output is committed.
#   scripts/gen-cri.sh [OUTPUT_ROOT]    default: the repository, i.e. in place
# Uses .venv (scripts/venv.sh test installs the pinned grpcio-tools and mypy-protobuf), or $PYTHON.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root}"
python="${PYTHON:-$root/.venv/bin/python}"
bin="$(dirname "$python")"
for tool in protoc-gen-mypy protoc-gen-mypy_grpc; do
    [ -x "$bin/$tool" ] || { echo "gen-cri: $bin/$tool missing: run scripts/venv.sh test" >&2; exit 1; }
done
mkdir -p "$out/nodeagent/runtime/cri"
cd "$root"
"$python" -m grpc_tools.protoc \
    --proto_path=. \
    --python_out="$out" \
    --grpc_python_out="$out" \
    --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" \
    --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" \
    --mypy_out=quiet:"$out" \
    --mypy_grpc_out=quiet:"$out" \
    nodeagent/runtime/cri/api.proto
