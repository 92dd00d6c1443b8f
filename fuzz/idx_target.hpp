// fuzz/idx_target.hpp -- the body of the two IDX targets (fuzz_idx: the input is the file,
// plain or gzip as it comes; fuzz_idx_gz: the input gzip-compressed first, so every mutation
// reaches the IDX parser behind zlib).
//
// One input is read as an images file (read_idx_images), as a labels file with 10 and with
// 256 classes (read_idx_labels), and -- when it is a valid images file -- loaded with
// load_idx against a generated labels file of the same count and of one more (which must
// be rejected). What a reader accepts is checked against its documented contract.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/data/idx.hpp"
#include "fuzz_common.hpp"

namespace fuzz {

inline std::vector<std::uint8_t> idx_labels_file(std::uint32_t count) {
  std::vector<std::uint8_t> b = {0, 0, 8, 1};
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(count >> s));
  for (std::uint32_t i = 0; i < count; ++i) b.push_back(static_cast<std::uint8_t>(i % 10));
  return b;
}

inline void run_idx(const std::uint8_t* data, std::size_t size, bool compress) {
  static MemFile file("idx"), labels_file("idx_labels");
  if (compress) {
    file.write(gzip(data, size));
  } else {
    file.write(data, size);
  }
  const std::string& path = file.path();

  fasttrain::data::IdxImages img;
  const bool images_ok = accepted([&] { img = fasttrain::data::read_idx_images(path); }, {path});
  if (images_ok) {
    if (img.count < 1 || img.rows < 1 || img.cols < 1 ||
        img.pixels.size() != static_cast<std::size_t>(img.count * img.rows * img.cols))
      fail("read_idx_images accepted a file but returned inconsistent dimensions");
  }

  for (const int classes : {10, 256}) {
    std::vector<std::int32_t> labels;
    if (accepted([&] { labels = fasttrain::data::read_idx_labels(path, classes); }, {path})) {
      if (labels.empty()) fail("read_idx_labels accepted a file with no labels");
      for (const auto y : labels)
        if (y < 0 || y >= classes) fail("read_idx_labels returned a label out of range");
    }
  }

  if (images_ok && img.count <= 100000) {
    const auto n = static_cast<std::uint32_t>(img.count);
    const std::string& lpath = labels_file.path();
    labels_file.write(idx_labels_file(n));
    fasttrain::data::Dataset ds;
    if (!accepted([&] { ds = fasttrain::data::load_idx(path, lpath, 10, "fuzz"); }, {path, lpath}))
      fail("load_idx rejected a pair whose images file read_idx_images accepted");
    try {
      ds.validate();
    } catch (const std::exception& e) {
      fail(std::string("load_idx returned a dataset that fails validate(): ") + e.what());
    }
    if (ds.size() != img.count || ds.sample_shape != fasttrain::Shape(1, img.rows, img.cols))
      fail("load_idx: dataset shape differs from the images file");
    for (Eigen::Index i = 0; i < ds.features.size(); ++i) {
      const float v = ds.features.data()[i];
      if (!(v >= 0.f && v <= 1.f)) fail("load_idx: a feature outside [0, 1]");
    }
    labels_file.write(idx_labels_file(n + 1));
    if (accepted([&] { fasttrain::data::load_idx(path, lpath, 10, "fuzz"); }, {path, lpath}))
      fail("load_idx accepted images and labels files that disagree on the count");
  }
}

}  // namespace fuzz
