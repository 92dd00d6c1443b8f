#!/usr/bin/env bash
# benchmarks/data_parallel.sh -- dist::DataParallel's scaling on this machine: the job's
# samples/s with 1 and 2 ranks (one thread each, batch B per rank), the scaling efficiency
# samples/s(2) / (2 * samples/s(1)) and the share of time in the gradient allreduces.
# Median of ROUNDS runs (default 3) per rank count, alternating 1 and 2 ranks. Needs an
# idle machine with 2 cores and Open MPI (scripts/install-deps.sh installs it).
#
#   cmake --build --preset release --target bench_data_parallel
#   bash benchmarks/data_parallel.sh [ROUNDS] [MODEL=mlp|cnn] [BATCH=64] [EPOCHS=1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=build/release/benchmarks/bench_data_parallel
rounds=${1:-3}
model=${2:-mlp}
batch=${3:-64}
epochs=${4:-1}
[[ -x $bin ]] || { echo "data_parallel: $bin not built (see the header of this script)" >&2; exit 1; }
flags=()
mpiexec --version 2>/dev/null | grep -qE "Open MPI|OpenRTE" && flags=(--oversubscribe --allow-run-as-root)
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$rounds"); do
  for n in 1 2; do
    line=$(mpiexec -n "$n" "${flags[@]}" "$bin" --model "$model" --batch "$batch" --epochs "$epochs" --threads 1 | tail -n 1)
    echo "$line" >&2
    echo "$line" >> "$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
by = {}
for r in runs:
    by.setdefault(int(r["ranks"]), []).append(r)
med = lambda rs, k: statistics.median(float(r[k]) for r in rs)
one = med(by[1], "samples_per_second")
print("| ranks | global batch | samples/s (median) | scaling efficiency | allreduce share of time |")
print("|---|---|---|---|---|")
for n in sorted(by):
    rs = by[n]
    sps = med(rs, "samples_per_second")
    print(f"| {n} | {rs[0]['global_batch']} | {sps:,.0f} | {sps / (n * one):.2f} | {med(rs, 'communication_fraction'):.1%} |")
PY
