// fasttrain/train/evaluate.hpp -- accuracy of a model on a dataset, in evaluation mode.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>

#include "fasttrain/data/dataset.hpp"
#include "fasttrain/nn/layer.hpp"

namespace fasttrain {

/// Runs `model` in evaluation mode (dropout off) over samples [begin, end) of `ds` (end < 0:
/// to the last), `chunk` samples at a time, and calls f(first, count, outputs) for each chunk
/// (outputs: one column per sample).
template <class Model, class F>
void for_each_output(Model& model, const data::Dataset& ds, std::int64_t chunk, F&& f, std::int64_t begin = 0,
                     std::int64_t end = -1) {
  typename Model::backend::tensor x;
  if (end < 0 || end > ds.size()) end = ds.size();
  for (std::int64_t first = begin; first < end; first += chunk) {
    const std::int64_t n = std::min(chunk, end - first);
    x.shape = ds.sample_shape;
    Model::backend::from_host(ds.features.data() + first * ds.features.rows(), ds.features.rows(), n, x.data);
    f(first, n, model.forward(x, nn::Mode::eval));
  }
}

/// Part `shard` of `num_shards` of n samples, as [begin, end): contiguous, sizes differing by
/// at most one.
inline std::pair<std::int64_t, std::int64_t> shard_range(std::int64_t n, int shard, int num_shards) {
  return {n * shard / num_shards, n * (shard + 1) / num_shards};
}

/// Samples of [begin, end) of `ds` (end < 0: to the last) whose arg-max output equals the
/// label, computed in chunks of `chunk` samples (evaluation mode: dropout off).
template <class Model>
std::int64_t count_correct(Model& model, const data::Dataset& ds, std::int64_t chunk = 256, std::int64_t begin = 0,
                           std::int64_t end = -1) {
  using B = typename Model::backend;
  typename B::labels pred;
  std::int64_t correct = 0;
  for_each_output(model, ds, chunk, [&](std::int64_t first, std::int64_t n, const auto& out) {
    B::argmax_columns(out.data, pred);
    for (std::int64_t j = 0; j < n; ++j)
      correct += pred[static_cast<std::size_t>(j)] == ds.labels[static_cast<std::size_t>(first + j)];
  }, begin, end);
  return correct;
}

/// Fraction of `ds` whose arg-max output equals the label, computed in chunks of `chunk`
/// samples (evaluation mode: dropout off).
template <class Model>
double evaluate_accuracy(Model& model, const data::Dataset& ds, std::int64_t chunk = 256) {
  if (ds.size() == 0) return 0.0;
  return static_cast<double>(count_correct(model, ds, chunk)) / static_cast<double>(ds.size());
}

}  // namespace fasttrain
