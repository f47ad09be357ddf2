#!/bin/sh
# Generates the Python gRPC stubs for the Basin contract (proto/basin/v1/*.proto) into
# basin/_proto/ (git-ignored; never edit the output by hand).
#
#   sh client/python/generate_stubs.sh [OUT_DIR]
#
# OUT_DIR defaults to client/python/basin/_proto. Environment: PROTOC (default protoc),
# GRPC_PYTHON_PLUGIN (default /usr/bin/grpc_python_plugin, else grpc_python_plugin on PATH).
# The generated modules import each other as `basin.v1.basin_pb2`; basin/__init__.py adds
# basin/_proto/basin to the package path so those imports resolve without editing them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-"$here/basin/_proto"}
protoc=${PROTOC:-protoc}
plugin=${GRPC_PYTHON_PLUGIN:-}
if [ -z "$plugin" ]; then
  if [ -x /usr/bin/grpc_python_plugin ]; then plugin=/usr/bin/grpc_python_plugin
  else plugin=$(command -v grpc_python_plugin || true); fi
fi
if [ -z "$plugin" ] || [ ! -x "$plugin" ]; then
  echo "generate_stubs.sh: grpc_python_plugin not found (Debian: apt-get install protobuf-compiler-grpc)" >&2
  exit 1
fi
mkdir -p "$out"
"$protoc" --python_out="$out" --grpc_out="$out" --plugin=protoc-gen-grpc="$plugin" \
  -I "$root/proto" "$root"/proto/basin/v1/*.proto
echo "generated $(ls "$out"/basin/v1/*.py | wc -l) stub modules in $out/basin/v1"
