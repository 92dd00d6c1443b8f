// fasttrain/train/evaluate.hpp -- accuracy of a model on a dataset, in evaluation mode.
#pragma once

#include <algorithm>
#include <cstdint>

#include "fasttrain/data/dataset.hpp"
#include "fasttrain/nn/layer.hpp"

namespace fasttrain {

/// Runs `model` in evaluation mode (dropout off) over `ds`, `chunk` samples at a time, and
/// calls f(first, count, outputs) for each chunk (outputs: one column per sample).
template <class Model, class F>
void for_each_output(Model& model, const data::Dataset& ds, std::int64_t chunk, F&& f) {
  typename Model::backend::tensor x;
  for (std::int64_t first = 0; first < ds.size(); first += chunk) {
    const std::int64_t n = std::min(chunk, ds.size() - first);
    x.shape = ds.sample_shape;
    Model::backend::from_host(ds.features.data() + first * ds.features.rows(), ds.features.rows(), n, x.data);
    f(first, n, model.forward(x, nn::Mode::eval));
  }
}

/// Fraction of `ds` whose arg-max output equals the label, computed in chunks of `chunk`
/// samples (evaluation mode: dropout off).
template <class Model>
double evaluate_accuracy(Model& model, const data::Dataset& ds, std::int64_t chunk = 256) {
  using B = typename Model::backend;
  if (ds.size() == 0) return 0.0;
  typename B::labels pred;
  std::int64_t correct = 0;
  for_each_output(model, ds, chunk, [&](std::int64_t first, std::int64_t n, const auto& out) {
    B::argmax_columns(out.data, pred);
    for (std::int64_t j = 0; j < n; ++j)
      correct += pred[static_cast<std::size_t>(j)] == ds.labels[static_cast<std::size_t>(first + j)];
  });
  return static_cast<double>(correct) / static_cast<double>(ds.size());
}

}  // namespace fasttrain
