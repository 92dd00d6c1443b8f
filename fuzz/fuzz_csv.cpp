// fuzz/fuzz_csv.cpp -- libFuzzer target: the CSV reader (data::read_csv) on the input as a
// file, under five option sets (label first / last / in the middle, with and without a header,
// ',' ';' tab and space delimiters, inferred and given num_classes). The input may also be
// gzip (a seed is). What the reader accepts is checked against its documented contract.
// Run with scripts/fuzz.sh; see docs/reliability.md. fuzz.sh reads the FUZZ_ARGS line.
// The reader's working memory should stay within a small multiple of the file: the limit
// below is ~250x the largest input, so only a disproportionate allocation trips it.
// FUZZ_ARGS: -max_len=65536 -malloc_limit_mb=16
#include <cmath>
#include <cstdint>

#include "fasttrain/data/csv.hpp"
#include "fuzz_common.hpp"

using fasttrain::data::CsvOptions;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fuzz::MemFile file("csv");
  file.write(data, size);
  const std::string& path = file.path();

  static const CsvOptions options[] = {
      {},
      {.label_column = -1, .has_header = true, .num_classes = 10},
      {.label_column = 1, .delimiter = ';'},
      {.label_column = -2, .delimiter = '\t', .num_classes = 3},
      {.label_column = 0, .delimiter = ' '},
  };
  for (const CsvOptions& opt : options) {
    fasttrain::data::Dataset ds;
    if (!fuzz::accepted([&] { ds = fasttrain::data::read_csv(path, opt); }, {path})) continue;
    try {
      ds.validate();
    } catch (const std::exception& e) {
      fuzz::fail(std::string("read_csv returned a dataset that fails validate(): ") + e.what());
    }
    if (ds.size() < 1 || ds.sample_shape.size() < 1) fuzz::fail("read_csv accepted a file with no samples");
    if (opt.num_classes > 0 && ds.num_classes != opt.num_classes) fuzz::fail("read_csv changed num_classes");
    if (opt.num_classes == 0 && ds.num_classes > opt.max_inferred_classes)
      fuzz::fail("read_csv inferred more classes than max_inferred_classes");
    const bool gzipped = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
    if (!gzipped && static_cast<std::size_t>(ds.size()) * static_cast<std::size_t>(ds.sample_shape.size()) > size)
      fuzz::fail("read_csv returned more feature values than the file has bytes");
    for (Eigen::Index i = 0; i < ds.features.size(); ++i)
      if (!std::isfinite(ds.features.data()[i])) fuzz::fail("read_csv returned a non-finite feature");
  }
  return 0;
}
