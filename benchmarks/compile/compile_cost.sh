#!/usr/bin/env bash
# benchmarks/compile/compile_cost.sh -- what fasttrain costs a user's build: wall time and peak
# memory of g++ compiling (and linking) four small programs, one at a time, each run --repeat
# times (the table shows the median time and the largest peak memory).
#
#   bash benchmarks/compile/compile_cost.sh [--repeat 3] [--cxx g++] [--flags "-O2 -march=native -fopenmp"]
#
# Programs (this folder): eigen_gemm.cpp (Eigen alone, the floor), empty_main.cpp (the umbrella
# header), mlp_csv.cpp (an MLP on a CSV file, one Trainer, no methods), cnn_methods.cpp (a
# BatchNorm CNN with BlurPool surgery, EMA, LabelSmoothing, CutOut, GradientClipping, Checkpoint
# and Profiler). ccache is bypassed: these are cold compiles, as a user's first build is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repeat=1
cxx=g++
flags="-O2 -march=native -fopenmp"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --repeat) repeat="$2"; shift 2 ;;
    --cxx) cxx="$2"; shift 2 ;;
    --flags) flags="$2"; shift 2 ;;
    *) echo "compile_cost.sh: unknown argument '$1' (see the header of this script)" >&2; exit 2 ;;
  esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "$cxx $($cxx -dumpversion), -std=c++20 $flags, $(nproc) cores, $repeat run(s) each, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf '| %-12s | %8s | %10s |\n' program "time s" "peak MB"
printf '|%s|%s|%s|\n' "--------------" "----------" "------------"
for prog in eigen_gemm empty_main mlp_csv cnn_methods; do
  times=()
  peak=0
  for ((i = 0; i < repeat; i++)); do
    # shellcheck disable=SC2086  # flags are words
    /usr/bin/time -f '%e %M' -o "$out/time" \
      "$cxx" -std=c++20 $flags -Iinclude $(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3) \
      "benchmarks/compile/$prog.cpp" -o "$out/$prog" -lz -pthread
    read -r t m <"$out/time"
    times+=("$t")
    ((m > peak)) && peak=$m
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
  printf '| %-12s | %8s | %10d |\n' "$prog" "$median" $((peak / 1024))
done
