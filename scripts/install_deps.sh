#!/usr/bin/env bash
# Installs the Debian 12 packages petaring needs, only those missing. Run as root (or
# with sudo available). Nothing is downloaded outside apt.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libboost-dev libcapnp-dev capnproto libusb-1.0-0-dev libyaml-cpp-dev
  libopenmpi-dev openmpi-bin libgtest-dev libgmock-dev libbenchmark-dev
  libopenblas-dev libdnnl-dev libblis-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
  dataset-fashion-mnist fortunes libsqlite3-dev libssl-dev clang-16 lld-16 libcairo2-dev
)
# The PyTorch reference for `make bench-train` is optional: PETARING_WITH_TORCH=1.
if [[ "${PETARING_WITH_TORCH:-0}" == 1 ]]; then PACKAGES+=(python3-torch); fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "petaring: installing missing Debian packages: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "petaring: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
