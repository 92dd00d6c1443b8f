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

}  // namespace fixtures
