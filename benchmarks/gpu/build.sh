#!/usr/bin/env bash
# benchmarks/gpu/build.sh -- build the CUDA binaries of benchmarks/gpu/run.sh on a machine
# without a GPU, for a GPU machine that lacks the build's dependencies (Eigen, doctest, the
# data set): the binaries, the shared libraries they need beyond the CUDA runtime's, and
# Fashion-MNIST go into one folder to copy there.
#
#   benchmarks/gpu/build.sh [OUTDIR]        (default build/gpu-bin)
#   then, on the GPU machine:  benchmarks/gpu/run.sh --bin OUTDIR
#
# CUDA_ARCH (default sm_90: H100, H200) picks the GPU; the host code is built for
# FASTTRAIN_HOST_ARCH (default x86-64-v3: AVX2 and FMA, which any recent x86-64 server has)
# so that it runs on the GPU machine's processor too.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${1:-build/gpu-bin}
export CUDA_ARCH=${CUDA_ARCH:-sm_90} FASTTRAIN_HOST_ARCH=${FASTTRAIN_HOST_ARCH:-x86-64-v3}
source benchmarks/gpu/nvcc-flags.sh
[[ -n "$NVCC" ]] || { echo "build.sh: no nvcc (the CUDA toolkit)" >&2; exit 1; }
data=${FASTTRAIN_DATA:-/usr/share/datasets/fashion-mnist}
ls "$data"/train-images-idx3-ubyte* >/dev/null 2>&1 || { echo "build.sh: no Fashion-MNIST in $data" >&2; exit 1; }
mkdir -p "$out/lib" "$out/data"
start=$SECONDS
"$NVCC" "${NVCC_FLAGS[@]}" -x cu tests/test_main.cpp tests/test_backends.cpp -o "$out/backend_tests" -lcublas -lz &
"$NVCC" "${NVCC_FLAGS[@]}" -x cu benchmarks/bench_backends.cpp -o "$out/bench_backends" -lcublas -lz &
"$NVCC" "${NVCC_FLAGS[@]}" -x cu benchmarks/bench_gpu_accuracy.cpp -o "$out/bench_gpu_accuracy" -lcublas -lz &
wait -n && wait -n && wait -n
echo "build.sh: built in $((SECONDS - start)) s"
# The libraries outside the CUDA toolkit and libc (OpenMP's runtime, zlib), for a machine
# that lacks them: run.sh puts this folder last on LD_LIBRARY_PATH.
for lib in libgomp.so.1 libz.so.1; do
  p=$(ldd "$out/bench_backends" | awk -v l="$lib" '$1 == l { print $3 }')
  [[ -n "$p" ]] && cp -L "$p" "$out/lib/"
done
cp "$data"/*.gz "$out/data/"
du -sh "$out"
