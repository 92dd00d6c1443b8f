#!/usr/bin/env bash
# scripts/nvcc-check.sh -- compile the gpu::thrust backend's tests and benchmark with nvcc, for
# the CUDA device system (cuBLAS GEMM, kernels as CUDA kernels). Compile only: nothing runs,
# so no GPU is needed. When nvcc is absent, says so and exits 0 (CI never fails for it).
#
#   scripts/nvcc-check.sh [build-dir]      (default build/nvcc-check)
#
# benchmarks/gpu/run.sh builds the same sources with the same flags and runs them on a GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benchmarks/gpu/nvcc-flags.sh   # sets NVCC (empty when there is none) and NVCC_FLAGS

if [[ -z "$NVCC" ]]; then
  echo "nvcc-check: no nvcc on PATH or in /usr/local/cuda/bin: skipping the CUDA compile check"
  exit 0
fi
out=${1:-build/nvcc-check}
mkdir -p "$out"
echo "nvcc-check: $("$NVCC" --version | tail -n 2 | head -n 1)"
for src in tests/test_backends.cpp benchmarks/bench_backends.cpp; do
  start=$SECONDS
  "$NVCC" "${NVCC_FLAGS[@]}" -c -x cu "$src" -o "$out/$(basename "$src" .cpp).o"
  echo "nvcc-check: $src compiles for CUDA ($((SECONDS - start)) s)"
done
