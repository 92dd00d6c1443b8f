#!/usr/bin/env bash
# scripts/fuzz.sh -- build and run every libFuzzer target (fuzz/fuzz_*.cpp) for a bounded time
# under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   bash scripts/fuzz.sh                  # 20 s per target (what CI runs)
#   bash scripts/fuzz.sh --seconds 120    # longer
#   bash scripts/fuzz.sh --seconds 60 --only csv      # one target (name without fuzz_)
#   bash scripts/fuzz.sh --keep           # keep the work directory (grown corpora, logs)
#
# Each target is compiled with clang++ (-fsanitize=fuzzer,address,undefined) into a work
# directory under $TMPDIR and run on a temporary copy of its seed corpus, fuzz/corpus/<name>/
# (<name> = file name without fuzz_ and .cpp; fuzz/corpus/fuzz_<name>/ is accepted too), so
# the committed corpus never grows. Extra libFuzzer flags for a target (its -max_len,
# -malloc_limit_mb) come from a "// FUZZ_ARGS: ..." line in its source. A new
# fuzz/fuzz_*.cpp is picked up automatically.
#
# Prints per target: executions, exec/s, seconds, and the verdict. Exits non-zero when
# clang++ or the fuzzer runtime is missing, a target does not build, or any target finds
# anything (crash, uncaught exception, leak, timeout, OOM, sanitizer report); the reproducer
# is copied to fuzz-findings/ in the work directory and its path printed, with the command to
# replay it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=20
only=""
keep=0
while (($#)); do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --only) only="${2:?--only needs a target name}"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] && ((seconds > 0)) || { echo "fuzz.sh: --seconds must be a positive integer, got '$seconds'" >&2; exit 2; }

# ---- the toolchain ---------------------------------------------------------------------
cxx="${FUZZ_CXX:-}"
if [[ -z "$cxx" ]]; then
  for c in clang++ clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then cxx="$c"; break; fi
  done
fi
if [[ -z "$cxx" ]] || ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz.sh: ERROR: ${cxx:-clang++} not found. libFuzzer needs clang; on Debian 12:" >&2
  echo "  apt-get install -y --no-install-recommends clang libclang-rt-dev   (or: bash scripts/install-deps.sh)" >&2
  exit 1
fi
rt="$("$cxx" -print-file-name=libclang_rt.fuzzer-x86_64.a 2>/dev/null || true)"
if [[ "$(uname -m)" == x86_64 && ( -z "$rt" || ! -f "$rt" ) ]]; then
  echo "fuzz.sh: ERROR: $cxx has no libFuzzer runtime (libclang_rt.fuzzer-x86_64.a not found)." >&2
  echo "  On Debian 12 it is in libclang-rt-14-dev: apt-get install -y --no-install-recommends libclang-rt-dev" >&2
  exit 1
fi
eigen="${EIGEN_INCLUDE:-/usr/include/eigen3}"
[[ -f "$eigen/Eigen/Core" ]] || { echo "fuzz.sh: ERROR: Eigen not found at $eigen (set EIGEN_INCLUDE)" >&2; exit 1; }

shopt -s nullglob
sources=("$root"/fuzz/fuzz_*.cpp)
shopt -u nullglob
((${#sources[@]})) || { echo "fuzz.sh: ERROR: no fuzz/fuzz_*.cpp targets" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/fasttrain-fuzz.XXXXXX")"
if ((keep)); then
  echo "fuzz.sh: work directory $work (kept)"
else
  trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/fuzz-findings"

echo "fuzz.sh: $("$cxx" --version | head -n1); ${seconds} s per target; work directory $work"
flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -I "$root/include" -isystem "$eigen" -I "$root/fuzz")

# ASan/UBSan settings: a report stops the run with a non-zero status and a stack trace.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

status=0
summary=()
for src in "${sources[@]}"; do
  stem="$(basename "$src" .cpp)"   # fuzz_csv
  name="${stem#fuzz_}"             # csv
  [[ -n "$only" && "$only" != "$name" && "$only" != "$stem" ]] && continue
  bin="$work/$stem"
  echo
  echo "---- $stem: build"
  if ! "$cxx" "${flags[@]}" "$src" -o "$bin" -lz -pthread 2>"$work/$stem.build.log"; then
    cat "$work/$stem.build.log" >&2
    echo "fuzz.sh: ERROR: $stem does not build" >&2
    summary+=("$(printf '%-16s %12s %10s %8s  %s' "$stem" - - - "BUILD FAILED")")
    status=1
    continue
  fi

  corpus="$work/corpus-$name"
  mkdir -p "$corpus"
  seeds="none"
  for d in "$root/fuzz/corpus/$name" "$root/fuzz/corpus/$stem"; do
    if [[ -d "$d" ]]; then
      cp -R "$d/." "$corpus/"
      seeds="$(find "$d" -type f | wc -l) files from ${d#"$root"/}"
      break
    fi
  done
  extra=()
  args_line="$(grep -m1 -E '^// FUZZ_ARGS:' "$src" || true)"
  [[ -n "$args_line" ]] && read -r -a extra <<<"${args_line#// FUZZ_ARGS:}"

  echo "---- $stem: run ${seconds} s, seeds: $seeds, ${extra[*]:-default limits}"
  log="$work/$stem.log"
  start=$SECONDS
  set +e
  (cd "$work/fuzz-findings" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$work/fuzz-findings/$stem-" "${extra[@]}" "$corpus") >"$log" 2>&1
  rc=$?
  set -e
  took=$((SECONDS - start))
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
  artifacts=("$work/fuzz-findings/$stem-"*)
  [[ -e "${artifacts[0]}" ]] || artifacts=()
  if ((rc == 0)) && ((${#artifacts[@]} == 0)); then
    verdict="ok, nothing found"
    tail -n 3 "$log" | sed 's/^/    /'
  else
    status=1
    verdict="FOUND SOMETHING (exit $rc)"
    echo "---- $stem: libFuzzer log (last 60 lines of $log):"
    tail -n 60 "$log" | sed 's/^/    /'
    for a in "${artifacts[@]}"; do
      echo "    reproducer: $a"
      echo "    replay:     $bin $a"
    done
    if ((!keep)); then
      keep=1
      trap - EXIT
      echo "    (work directory $work kept for the reproducer)"
    fi
  fi
  summary+=("$(printf '%-16s %12s %10s %8s  %s' "$stem" "${execs:-?}" "${rate:-?}" "$took" "$verdict")")
done

if ((${#summary[@]} == 0)); then
  echo "fuzz.sh: ERROR: no target matched --only '$only'" >&2
  exit 2
fi
echo
echo "==== fuzz summary (${seconds} s per target, ASan + UBSan)"
printf '%-16s %12s %10s %8s  %s\n' target executions exec/s seconds result
printf '%s\n' "${summary[@]}"
((status)) && echo "fuzz.sh: FAILED (see the reproducers above)" >&2
exit "$status"
