#!/usr/bin/env bash
# scripts/install-deps.sh -- make sure the Debian packages fasttrain needs are installed.
#
# Idempotent: checks each package with dpkg-query and does nothing (no apt at all) when all
# are present. When some are missing: as root, `apt-get update` + `apt-get install -y
# --no-install-recommends <missing>`; otherwise prints the command to run and exits 1.
# (OpenMP needs no package: libgomp comes with g++; nor do the asan/ubsan/tsan presets:
# libasan, libubsan and libtsan come with g++ too.)
set -euo pipefail

packages=(
  cmake
  g++
  make
  libeigen3-dev
  doctest-dev
  zlib1g-dev
  ccache
  dataset-fashion-mnist
  # fasttrain::dist (data-parallel training over MPI): its tests run 2 ranks under mpiexec
  libopenmpi-dev
  openmpi-bin
  # scripts/fuzz.sh: clang++ and the libFuzzer/sanitizer runtimes (libclang_rt.fuzzer-x86_64.a),
  # which clang only recommends (Debian 12: clang -> clang-14, libclang-rt-dev -> libclang-rt-14-dev)
  clang
  libclang-rt-dev
  # the optional backends: cpu::xtensor (xtensor, xtensor-blas over OpenBLAS), gpu::thrust
  # (Thrust; with g++ it runs on the CPU through its OpenMP device system)
  xtensor-dev
  libxtensor-blas-dev
  libopenblas-dev
  libthrust-dev
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: no dpkg-query (not Debian?); cannot check packages, assuming these are present:" >&2
  echo "  ${packages[*]}" >&2
  exit 0
fi

installed() {
  # True when some architecture of package $1 has status "installed".
  local status
  status=$(dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null) || return 1
  [[ $'\n'$status$'\n' == *' installed'$'\n'* ]]
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: missing: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: not root; install them with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

still=()
for p in "${missing[@]}"; do
  installed "$p" || still+=("$p")
done
if ((${#still[@]} != 0)); then
  echo "install-deps: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "install-deps: installed ${missing[*]}"
