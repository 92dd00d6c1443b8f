#!/usr/bin/env bash
# scripts/test.sh -- install dependencies, build the release preset and run every test, then
# fuzz the data readers and run the test suite again under ASan + UBSan (what CI runs).
# Extra arguments go to both ctest runs, e.g. `scripts/test.sh -L package` or `-R nn`.
#
# Stages (each prints a ==== header and its time):
#   1. dependencies            scripts/install-deps.sh
#   2. release                 cmake --preset release, build, ctest
#   3. nvcc                    scripts/nvcc-check.sh: gpu::thrust compiled for CUDA (skipped without nvcc)
#   4. fuzzing                 scripts/fuzz.sh --seconds 20 (skip: FASTTRAIN_TEST_FUZZ=0)
#   5. asan (ASan + UBSan)     cmake --preset asan, build, ctest (skip: FASTTRAIN_TEST_ASAN=0)
# docs/reliability.md has the sanitizer presets, the fuzz targets and their figures.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stage_start=$SECONDS
stage() {
  if [[ -n "${stage_name:-}" ]]; then
    echo "==== done: $stage_name ($((SECONDS - stage_start)) s)"
  fi
  stage_name="$1"
  stage_start=$SECONDS
  echo
  echo "==== $stage_name"
}

stage "dependencies (scripts/install-deps.sh)"
bash scripts/install-deps.sh

stage "release: build (cmake --preset release)"
cmake --preset release
cmake --build --preset release -j 2

stage "release: tests (ctest --preset release)"
ctest --preset release "$@"

stage "nvcc: compile gpu::thrust's tests and benchmark for CUDA, compile only (scripts/nvcc-check.sh; skipped without nvcc)"
bash scripts/nvcc-check.sh

if [[ "${FASTTRAIN_TEST_FUZZ:-1}" != 0 ]]; then
  stage "fuzzing: the IDX, CSV and checkpoint readers, 20 s per target, ASan + UBSan (scripts/fuzz.sh)"
  bash scripts/fuzz.sh --seconds 20
fi

if [[ "${FASTTRAIN_TEST_ASAN:-1}" != 0 ]]; then
  stage "asan: build, AddressSanitizer + UndefinedBehaviorSanitizer (cmake --preset asan)"
  cmake --preset asan
  cmake --build --preset asan -j 2

  stage "asan: tests (ctest --preset asan)"
  ctest --preset asan "$@"
fi

stage_end=$((SECONDS - stage_start))
echo "==== done: $stage_name ($stage_end s)"
echo
echo "==== all stages passed in $SECONDS s"
