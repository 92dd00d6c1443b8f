#!/usr/bin/env bash
# benchmarks/cnn_methods.sh -- each method's effect on the Fashion-MNIST CNN (or, with
# BENCH=resnet, the ResNet and its 10-epoch budget; recipes: mild, medium, hot): wall-clock
# training seconds to a target test accuracy (default 0.91), median of seeds 1..SEEDS
# (default 3), against the baseline. Every run has the example's 12-epoch budget (warmup
# 0.5 epochs + cosine over 12) and stops at the first evaluation reaching the target; a run
# that never reaches it counts as not reached (shown as "-", and the median is then taken
# over the budget as a lower bound, marked ">"). Prints a Markdown table and one JSON line
# per run to stderr. Needs an idle machine: every figure is wall-clock.
#
#   cmake --build --preset release --target bench_cnn_methods bench_resnet_methods
#   [BENCH=resnet] bash benchmarks/cnn_methods.sh [SEEDS] [TARGET] [METHODS...]
#
# METHODS default: none mixup cutmix cutout. An entry METHOD:FLAGS passes extra flags,
# comma-separated, e.g. selective_backprop:--sb-start=0 (it is then a row of its own). The
# runs go seed by seed, every method within a seed, so drift in the machine's speed spreads
# over all methods instead of landing on the last ones. FIRST_SEED=K starts at seed K (to add
# seeds to a series).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bin=build/release/benchmarks/bench_${BENCH:-cnn}_methods
seeds=${1:-3}
target=${2:-0.91}
shift $(( $# > 2 ? 2 : $# ))
methods=("$@")
((${#methods[@]})) || methods=(none mixup cutmix cutout)
[[ -x $bin ]] || { echo "cnn_methods: $bin not built (see the header of this script)" >&2; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
for s in $(seq "${FIRST_SEED:-1}" "$seeds"); do
  for entry in "${methods[@]}"; do
    m=${entry%%:*}
    extra=()
    [[ $entry == *:* ]] && IFS=, read -r -a extra <<< "${entry#*:}"
    line=$("$bin" --method "$m" "${extra[@]}" --seed "$s" --target "$target" 2>/dev/null | tail -n 1)
    echo "$entry $line" >&2
    printf '%s\t%s\n' "$entry" "$line" >> "$out"
  done
done
python3 - "$out" "$target" <<'PY'
import json, statistics, sys
rows = []
for l in open(sys.argv[1]):
    if l.strip():
        label, js = l.rstrip("\n").split("\t", 1)
        rows.append((label, json.loads(js)))
target = float(sys.argv[2])
by = {}
for label, r in rows:
    by.setdefault(label, []).append(r)
def summary(rs):
    secs = [r.get("time_to_target_seconds") for r in rs]
    reached = [s for s in secs if s is not None]
    full = [s if s is not None else r["train_seconds"] for s, r in zip(secs, rs)]
    med = statistics.median(full)
    epochs = [r["epochs"] if r.get("time_to_target_seconds") is not None else None for r in rs]
    return med, len(reached) == len(rs), epochs, [r["test_accuracy"] for r in rs]
base = summary(by["none"])[0] if "none" in by else None
print(f"| method | seconds to {target} (median) | per seed | epochs to {target} | final accuracy | vs baseline |")
print("|---|---|---|---|---|---|")
for m, rs in by.items():
    med, all_reached, epochs, acc = summary(rs)
    per = ", ".join("-" if r.get("time_to_target_seconds") is None else f"{r['time_to_target_seconds']:.0f}" for r in rs)
    ep = ", ".join("-" if e is None else str(e) for e in epochs)
    rel = "" if base is None or m == "none" else f"{base / med:.2f}x" + ("" if all_reached else " (at most)")
    print(f"| {m} | {'' if all_reached else '>'}{med:.0f} | {per} | {ep} | {', '.join(f'{a:.4f}' for a in acc)} | {rel} |")
PY
