#!/usr/bin/env bash
# Installs everything Basin needs to build and test on Debian 12 / Ubuntu 22.04+ (apt only).
# CUDA is optional: when /usr/local/cuda/bin/nvcc exists the CUDA backend is compiled too.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(
  build-essential cmake pkg-config git
  libopenblas-dev liblapacke-dev nlohmann-json3-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libsqlite3-dev libgtest-dev libssl-dev openssl
  libonnx-dev clang
  debootstrap curl iproute2 util-linux bc
  python3 python3-numpy python3-grpcio python3-protobuf python3-pytest
)
if [ "${BASIN_WITH_TORCH:-1}" = "1" ]; then
  # Reference tests and benchmarks compare against PyTorch (float64) and ONNX export.
  # torchvision: real architectures (resnet18); sklearn: the bundled 8×8 digits data set.
  PACKAGES+=(python3-torch python3-onnx python3-matplotlib python3-torchvision python3-sklearn)
fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
