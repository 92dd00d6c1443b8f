// fuzz/fuzz_idx_gz.cpp -- libFuzzer target: the IDX reader on the input gzip-compressed first,
// so every mutation of the (uncompressed) IDX bytes reaches the parser behind zlib.
// Run with scripts/fuzz.sh; see docs/reliability.md. fuzz.sh reads the FUZZ_ARGS line.
// The data really read is at most 16 KiB; the reader may reserve up to what the compressed file
// could hold (1032x its size, so ~17 MiB at most here), and nothing more: hence the limit.
// FUZZ_ARGS: -max_len=16384 -malloc_limit_mb=32
#include "idx_target.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::run_idx(data, size, /*compress=*/true);
  return 0;
}
