// fuzz/fuzz_idx.cpp -- libFuzzer target: the IDX reader on the input as a file, plain or gzip
// as it comes (seeds of both kinds), so zlib's own error paths are reached too.
// Run with scripts/fuzz.sh; see docs/reliability.md. fuzz.sh reads the FUZZ_ARGS line.
// A 16 KiB gzip input inflates to at most ~16 MiB (x4 as floats in load_idx): hence the limits.
// FUZZ_ARGS: -max_len=16384 -malloc_limit_mb=160
#include "idx_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::run_idx(data, size, /*compress=*/false);
  return 0;
}
