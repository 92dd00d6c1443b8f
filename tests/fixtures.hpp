// Test data shared by the test translation units.
#pragma once

#include <fasttrain/data/dataset.hpp>
#include <fasttrain/core/rng.hpp>

namespace fixtures {

/// Three Gaussian blobs in 4 dimensions: sample j has class j % 3, and feature i is drawn
/// from N(mean, stddev) when i is its class, N(0, stddev) otherwise.
inline fasttrain::data::Dataset blobs(std::int64_t n, std::uint64_t seed, float mean = 3.f, float stddev = 0.7f) {
  fasttrain::data::Dataset ds;
  ds.features.resize(4, n);
  ds.labels.resize(static_cast<std::size_t>(n));
  ds.sample_shape = fasttrain::Shape(4);
  ds.num_classes = 3;
  ds.name = "blobs";
  fasttrain::Rng rng(seed);
  for (std::int64_t j = 0; j < n; ++j) {
    const auto c = static_cast<std::int32_t>(j % 3);
    ds.labels[static_cast<std::size_t>(j)] = c;
    for (int i = 0; i < 4; ++i) ds.features(i, j) = rng.normal(i == c ? mean : 0.f, stddev);
  }
  return ds;
}

/// Three classes of 16x16 images: a bright square in one of three places, plus noise.
inline fasttrain::data::Dataset squares(std::int64_t n, std::uint64_t seed) {
  fasttrain::data::Dataset ds;
  ds.name = "squares";
  ds.sample_shape = fasttrain::Shape(1, 16, 16);
  ds.num_classes = 3;
  ds.features.resize(256, n);
  ds.labels.resize(static_cast<std::size_t>(n));
  fasttrain::Rng rng(seed);
  for (std::int64_t j = 0; j < n; ++j) {
    const int c = static_cast<int>(j % 3);
    ds.labels[static_cast<std::size_t>(j)] = c;
    for (int p = 0; p < 256; ++p) {
      const int y = p / 16, x = p % 16;
      const bool on = y >= 2 + 4 * c && y < 6 + 4 * c && x >= 4 && x < 10;
      ds.features(p, j) = (on ? 1.f : 0.f) + rng.normal(0.f, 0.5f);
    }
  }
  return ds;
}

}  // namespace fixtures
