// fasttrain/data/fashion_mnist.hpp -- Fashion-MNIST (60,000 train / 10,000 test, 28x28, 10 classes).
//
//   auto [train, test] = data::fashion_mnist();          // Debian's dataset-fashion-mnist
//   auto [train, test] = data::fashion_mnist("/my/dir"); // or any directory with the 4 IDX files
//
// The directory holds train-images-idx3-ubyte, train-labels-idx1-ubyte,
// t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, each gzip-compressed (".gz") or not.
// Pixels are scaled to [0, 1]; samples have shape {1, 28, 28}. The two halves are read
// concurrently.
#pragma once

#include <filesystem>
#include <future>
#include <string>
#include <utility>

#include "fasttrain/core/error.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/data/idx.hpp"

namespace fasttrain::data {

struct TrainTest {
  Dataset train, test;
};

inline constexpr const char* default_fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";

namespace detail {

inline constexpr const char* fashion_mnist_hint =
    "install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist) or pass --data DIR";

// dir/base.gz if it exists, else dir/base if it exists, else a data_error with the hint.
inline std::string find_idx_file(const std::string& dir, const std::string& base) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path gz = fs::path(dir) / (base + ".gz"), plain = fs::path(dir) / base;
  if (fs::exists(gz, ec)) return gz.string();
  if (fs::exists(plain, ec)) return plain.string();
  throw data_error(gz.string(), fasttrain::detail::cat("not found (nor uncompressed ", base,
                                                       "): the Fashion-MNIST files are missing; ", fashion_mnist_hint));
}

}  // namespace detail

/// Loads Fashion-MNIST from `dir` as {train, test} (names "fashion-mnist/train" and
/// "fashion-mnist/test", 10 classes). Throws data_error when the directory or a file is
/// missing (with a hint on how to get the data) or a file is invalid.
inline TrainTest fashion_mnist(const std::string& dir = default_fashion_mnist_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw data_error(dir, fasttrain::detail::cat(fs::exists(dir, ec) ? "is not a directory" : "directory not found",
                                                 ": the Fashion-MNIST files are missing; ", detail::fashion_mnist_hint));
  const std::string train_images = detail::find_idx_file(dir, "train-images-idx3-ubyte");
  const std::string train_labels = detail::find_idx_file(dir, "train-labels-idx1-ubyte");
  const std::string test_images = detail::find_idx_file(dir, "t10k-images-idx3-ubyte");
  const std::string test_labels = detail::find_idx_file(dir, "t10k-labels-idx1-ubyte");
  // The test half loads on a second thread while this one loads the training half (if the
  // training half throws, the future's destructor waits for the test half to finish).
  auto test = std::async(std::launch::async, [&] { return load_idx(test_images, test_labels, 10, "fashion-mnist/test"); });
  TrainTest out;
  out.train = load_idx(train_images, train_labels, 10, "fashion-mnist/train");
  out.test = test.get();
  return out;
}

}  // namespace fasttrain::data
