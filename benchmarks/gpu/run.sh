#!/usr/bin/env bash
# benchmarks/gpu/run.sh -- on a machine with an NVIDIA GPU: build gpu::thrust with nvcc (CUDA
# device system, cuBLAS), run the backend conformance suite there, then the MLP and CNN
# training throughput on cpu::eigen and on the GPU (benchmarks/bench_backends.cpp).
#
#   benchmarks/gpu/run.sh [--data DIR] [--threads 2]
#
# Needs: nvcc (CUDA 13), cuBLAS, g++ 12, Eigen 3.4, doctest and zlib headers, and Fashion-MNIST
# (Debian: libeigen3-dev doctest-dev zlib1g-dev dataset-fashion-mnist). Each missing one is
# named before anything is built. Prints samples/s per backend and model, the JSON lines, and
# the GPU's speed-up over cpu::eigen at the same batch size. Results go to $OUT (or build/gpu).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
data=/usr/share/datasets/fashion-mnist
threads=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
source benchmarks/gpu/nvcc-flags.sh
missing=()
[[ -n "$NVCC" ]] || missing+=("nvcc (the CUDA toolkit)")
for h in /usr/include/eigen3/Eigen/Core /usr/include/doctest/doctest.h /usr/include/zlib.h; do
  [[ -e "$h" ]] || missing+=("$h")
done
ls "$data"/train-images-idx3-ubyte* >/dev/null 2>&1 || missing+=("Fashion-MNIST in $data (--data DIR)")
if ((${#missing[@]})); then
  echo "run.sh: missing: ${missing[*]}" >&2
  exit 1
fi
out=${OUT:-build/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "run.sh: nvidia-smi failed"

start=$SECONDS
"$NVCC" "${NVCC_FLAGS[@]}" -x cu tests/test_main.cpp tests/test_backends.cpp -o "$out/backend_tests" -lcublas -lz
"$NVCC" "${NVCC_FLAGS[@]}" -x cu benchmarks/bench_backends.cpp -o "$out/bench_backends" -lcublas -lz
echo "run.sh: built in $((SECONDS - start)) s"

echo "==== conformance: gpu::thrust (CUDA) against cpu::eigen"
"$out/backend_tests" | tee "$out/conformance.txt"

echo "==== throughput"
: > "$out/bench.jsonl"
for batch in 128 1024; do
  "$out/bench_backends" --backends eigen,thrust --batch "$batch" --threads "$threads" --data "$data" \
    --steps $((25600 / batch * 4)) --cnn-steps $((3840 / batch * 4)) | tee -a "$out/bench.txt"
done
grep '^{' "$out/bench.txt" > "$out/bench.jsonl"
# The speed-up of the GPU over cpu::eigen per (model, batch).
python3 - "$out/bench.jsonl" <<'PY' || true
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
eig = {(r["model"], r["batch"]): r["samples_per_second"] for r in rows if r["backend"] == "cpu::eigen"}
for r in rows:
    if r["backend"].startswith("gpu::thrust") and (r["model"], r["batch"]) in eig:
        print(f'{r["model"]} batch {r["batch"]}: {r["samples_per_second"]:.0f} samples/s on the GPU, '
              f'{r["samples_per_second"] / eig[(r["model"], r["batch"])]:.1f}x cpu::eigen')
PY
