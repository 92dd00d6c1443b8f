#!/usr/bin/env bash
# benchmarks/gpu/run.sh -- on a machine with an NVIDIA GPU: the backend conformance suite on
# the GPU, then training throughput of the MLP, CNN and ResNet on gpu::thrust (CUDA, data on
# the device) beside PyTorch on the same GPU (benchmarks/gpu/torch_peer.py: fp32 with TF32
# off, and AMP bf16), and one ratio table.
#
#   benchmarks/gpu/run.sh [--bin DIR] [--data DIR] [--batches 128,1024] [--quick] [--accuracy]
#
# --bin DIR: binaries made by benchmarks/gpu/build.sh on another machine (with the data set
# in DIR/data); without it, this script builds them here, which needs nvcc, cuBLAS, g++ 12,
# Eigen 3.4, doctest and zlib (Debian: libeigen3-dev doctest-dev zlib1g-dev) and Fashion-MNIST
# (dataset-fashion-mnist); each missing one is named. The peer needs python3 with PyTorch
# (CUDA); without it the table has fasttrain's column only. --quick: fewer steps. --accuracy:
# also the ResNet example trained to its budget in fp32 and bf16, fasttrain and PyTorch
# (bench_gpu_accuracy, torch_peer.py --to-accuracy 0.91): final accuracy and time to 91%.
# Results (text, JSON lines) go to $OUT, else build/gpu.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
bin=""
data=/usr/share/datasets/fashion-mnist
batches=128,1024
scale=4
accuracy=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) bin="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    --batches) batches="$2"; shift 2 ;;
    --quick) scale=1; shift ;;
    --accuracy) accuracy=1; shift ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${OUT:-build/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "run.sh: nvidia-smi failed"

if [[ -n "$bin" ]]; then
  [[ -d "$bin/data" && "$data" == /usr/share/datasets/fashion-mnist && ! -e "$data" ]] && data="$bin/data"
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$(cd "$bin" && pwd)/lib"
else
  source benchmarks/gpu/nvcc-flags.sh
  missing=()
  [[ -n "$NVCC" ]] || missing+=("nvcc (the CUDA toolkit)")
  for h in /usr/include/eigen3/Eigen/Core /usr/include/doctest/doctest.h /usr/include/zlib.h; do
    [[ -e "$h" ]] || missing+=("$h")
  done
  if ((${#missing[@]})); then
    echo "run.sh: missing: ${missing[*]} (or build elsewhere with benchmarks/gpu/build.sh and pass --bin)" >&2
    exit 1
  fi
  bin="$out"
  start=$SECONDS
  "$NVCC" "${NVCC_FLAGS[@]}" -x cu tests/test_main.cpp tests/test_backends.cpp -o "$bin/backend_tests" -lcublas -lz
  "$NVCC" "${NVCC_FLAGS[@]}" -x cu benchmarks/bench_backends.cpp -o "$bin/bench_backends" -lcublas -lz
  "$NVCC" "${NVCC_FLAGS[@]}" -x cu benchmarks/bench_gpu_accuracy.cpp -o "$bin/bench_gpu_accuracy" -lcublas -lz
  echo "run.sh: built in $((SECONDS - start)) s"
fi
ls "$data"/train-images-idx3-ubyte* >/dev/null 2>&1 || { echo "run.sh: no Fashion-MNIST in $data (--data DIR)" >&2; exit 1; }

echo "==== throughput: gpu::thrust (CUDA), data on the device; fp32, then MixedPrecision bf16"
: > "$out/bench.txt"
for precision in fp32 bf16; do
  for batch in ${batches//,/ }; do
    "$bin/bench_backends" --backends thrust --models mlp,cnn,resnet --batch "$batch" --threads 2 --data "$data" \
      --precision "$precision" --steps $((25600 * scale / batch)) --cnn-steps $((3840 * scale / batch + 10)) |
      tee -a "$out/bench.txt"
  done
done

echo "==== throughput: PyTorch on the same GPU"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  for precision in fp32 bf16; do
    python3 benchmarks/gpu/torch_peer.py --data "$data" --batches "$batches" --precision "$precision" \
      --samples $((25600 * scale)) | tee -a "$out/bench.txt"
  done
else
  echo "run.sh: no PyTorch with CUDA in python3: no peer column"
fi
grep '^{' "$out/bench.txt" > "$out/bench.jsonl"
python3 - "$out/bench.jsonl" <<'PY' | tee "$out/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ft = {(r["model"], r["batch"], r.get("precision", "fp32")): r["samples_per_second"] for r in rows if r["bench"] == "backends"}
tp = {(r["model"], r["batch"], r["precision"]): r["samples_per_second"] for r in rows if r["bench"] == "torch_peer"}
num = lambda v: f"{v:,.0f}" if v else "-"
ratio = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
print("| model | batch | gpu::thrust fp32 | PyTorch fp32 | ratio | MixedPrecision bf16 | PyTorch AMP bf16 | ratio | bf16 / own fp32 |")
print("|---|---|---|---|---|---|---|---|---|")
for m, b in sorted({(m, b) for m, b, _ in ft}):
    f32, b16 = ft.get((m, b, "fp32")), ft.get((m, b, "bf16"))
    t32, t16 = tp.get((m, b, "fp32")), tp.get((m, b, "bf16"))
    print(f"| {m} | {b} | {num(f32)} | {num(t32)} | {ratio(f32, t32)} | {num(b16)} | {num(t16)} | {ratio(b16, t16)} | {ratio(b16, f32)} |")
PY

if ((accuracy)); then
  echo "==== time to accuracy: the ResNet example's recipe, fasttrain and PyTorch, fp32 and bf16"
  "$bin/bench_gpu_accuracy" --data "$data" --precision fp32,bf16 | tee "$out/accuracy.txt"
  for precision in fp32 bf16; do
    python3 benchmarks/gpu/torch_peer.py --data "$data" --to-accuracy 0.91 --epochs 10 --precision "$precision" |
      tee -a "$out/accuracy.txt" || true
  done
fi

echo "==== conformance: gpu::thrust (CUDA) against cpu::eigen"
"$bin/backend_tests" > "$out/conformance.txt" 2>&1 || true
tail -n 60 "$out/conformance.txt"
