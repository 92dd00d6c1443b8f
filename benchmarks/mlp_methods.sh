#!/usr/bin/env bash
# benchmarks/mlp_methods.sh -- the effect of each foundation method on the Fashion-MNIST MLP.
#
# For the baseline and each method, trains fashion_mnist_mlp with seeds 1..SEEDS (default 3):
# once to the full 10-epoch budget (final test accuracy) and once stopping at TARGET (default
# 0.88) test accuracy (training seconds to reach it; the schedule still spans 10 epochs).
# Prints a Markdown table of medians. Needs a release build: cmake --preset release &&
# cmake --build --preset release --target fashion_mnist_mlp
#
#   bash benchmarks/mlp_methods.sh [SEEDS] [TARGET]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=build/release/examples/fashion_mnist_mlp
seeds=${1:-3}
target=${2:-0.88}
[[ -x $bin ]] || { echo "mlp_methods: $bin not built (see the header of this script)" >&2; exit 1; }

run() {  # run FLAGS... -> prints the JSON line
  "$bin" "$@" 2>/dev/null | tail -n 1
}

echo "| recipe | test accuracy after 10 epochs (median of $seeds) | seconds to $target (median) | epochs to $target |"
echo "|---|---|---|---|"
for recipe in "baseline|" "LabelSmoothing 0.1|--label-smoothing 0.1" "GradientClipping norm 1.0|--clip-norm 1.0"; do
  name=${recipe%%|*}
  flags=${recipe#*|}
  full=() tta=()
  for s in $(seq 1 "$seeds"); do
    # shellcheck disable=SC2086
    full+=("$(run --seed "$s" $flags)")
    # shellcheck disable=SC2086
    tta+=("$(run --seed "$s" --target "$target" $flags)")
  done
  printf '%s\n' "${full[@]}" > /tmp/mlp_methods_full.$$
  printf '%s\n' "${tta[@]}" > /tmp/mlp_methods_tta.$$
  python3 - "$name" /tmp/mlp_methods_full.$$ /tmp/mlp_methods_tta.$$ <<'PY'
import json, statistics, sys
name, full, tta = sys.argv[1], sys.argv[2], sys.argv[3]
f = [json.loads(l) for l in open(full)]
t = [json.loads(l) for l in open(tta)]
acc = statistics.median(r["test_accuracy"] for r in f)
secs = [r["time_to_target_seconds"] for r in t]
reached = [s for s in secs if s is not None]
sec = f"{statistics.median(reached):.2f}" if len(reached) == len(secs) else f"not reached in {len(secs)-len(reached)} runs"
eps = ",".join(str(r["epochs"]) for r in t)
each = ", ".join("%.4f" % r["test_accuracy"] for r in f)
print(f"| {name} | {acc:.4f} ({each}) | {sec} | {eps} |")
PY
  rm -f /tmp/mlp_methods_full.$$ /tmp/mlp_methods_tta.$$
done
