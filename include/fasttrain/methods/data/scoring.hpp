// fasttrain/methods/data/scoring.hpp -- how hard each training example is: the scores
// DataPruning drops examples by and Curriculum orders them by.
//
//   el2n_scores(model, ds)   EL2N (Paul et al. 2021, "Deep Learning on a Data Diet",
//                            arXiv:2107.07075): || softmax(f(x)) - onehot(y) ||_2 under the
//                            model now, in evaluation mode; one forward pass over `ds`.
//   ForgettingCounter        forgetting events (Toneva et al. 2019, "An Empirical Study of
//                            Example Forgetting", arXiv:1812.05159): how often an example
//                            goes from classified correctly to wrongly during training, read
//                            from the training forward passes (no extra pass).
// Higher is harder in both.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/train/context.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/evaluate.hpp"

namespace fasttrain::methods {

/// EL2N score of every sample of `ds` under `model` (evaluation mode: dropout off, batch
/// norm on its running statistics), computed `chunk` samples at a time.
template <class Model>
std::vector<float> el2n_scores(Model& model, const data::Dataset& ds, std::int64_t chunk = 512) {
  using B = typename Model::backend;
  fasttrain::detail::require(chunk >= 1, "fasttrain::methods::el2n_scores: chunk must be >= 1, got ", chunk);
  std::vector<float> out(static_cast<std::size_t>(ds.size()));
  cpu::eigen::matrix p;  // on the host: classes x chunk floats
  for_each_output(model, ds, chunk, [&](std::int64_t first, std::int64_t n, const auto& z) {
    if constexpr (std::is_same_v<B, cpu::eigen>) B::softmax_columns(z.data, p);
    else cpu::eigen::softmax_columns(host_copy<B>(z.data), p);
    for (std::int64_t j = 0; j < n; ++j) {
      const auto y = ds.labels[static_cast<std::size_t>(first + j)];
      if (y < 0 || y >= p.rows())
        throw shape_error(fasttrain::detail::cat("fasttrain::methods::el2n_scores: label ", y, " of sample ", first + j,
                                                 " of ", ds.name, " is out of range [0, ", p.rows(), ")"));
      p(y, j) -= 1.f;
      out[static_cast<std::size_t>(first + j)] = p.col(j).norm();
    }
  });
  return out;
}

/// Counts forgetting events per training example from the outputs of training steps.
class ForgettingCounter {
 public:
  void resize(std::int64_t n) {
    last_.assign(static_cast<std::size_t>(n), unseen);
    events_.assign(static_cast<std::size_t>(n), 0);
    learned_.assign(static_cast<std::size_t>(n), 0);
  }
  std::int64_t size() const { return static_cast<std::int64_t>(last_.size()); }

  /// Records whether each sample of a batch (dataset indices `idx`) was classified correctly
  /// by `outputs` (one column per sample).
  template <class Matrix, class Labels>
  void observe(const Matrix& outputs, const Labels& labels, const std::vector<std::int64_t>& idx) {
    for (std::size_t j = 0; j < idx.size(); ++j) {
      const auto i = idx[j];
      if (i < 0 || i >= size()) continue;
      Eigen::Index k = 0;
      outputs.col(static_cast<Eigen::Index>(j)).maxCoeff(&k);
      const bool right = k == static_cast<Eigen::Index>(labels[j]);
      auto& last = last_[static_cast<std::size_t>(i)];
      if (last == 1 && !right) ++events_[static_cast<std::size_t>(i)];
      last = right ? 1 : 0;
      if (right) learned_[static_cast<std::size_t>(i)] = 1;
    }
  }

  /// Forgetting events per example; an example never classified correctly (or never seen)
  /// scores +infinity, as in Toneva et al. (the hardest).
  std::vector<float> scores() const {
    std::vector<float> s(last_.size());
    for (std::size_t i = 0; i < s.size(); ++i)
      s[i] = learned_[i] ? static_cast<float>(events_[i]) : std::numeric_limits<float>::infinity();
    return s;
  }

  template <class Archive>
  void state(Archive& ar) {
    ar("last", last_);
    ar("events", events_);
    ar("learned", learned_);
    if constexpr (!Archive::saving)
      if (events_.size() != last_.size() || learned_.size() != last_.size())
        ar.invalid("the forgetting counts have columns of different lengths");
  }

 private:
  static constexpr std::int8_t unseen = -1;
  std::vector<std::int8_t> last_;     // -1 unseen, 0 wrong, 1 right at the last observation
  std::vector<std::int32_t> events_;  // right -> wrong transitions
  std::vector<std::int8_t> learned_;  // ever classified correctly
};

namespace detail {
/// The training set of a method that sets epoch orders (DataPruning, Curriculum), from an
/// epoch_begin context; a config_error naming `who` when the source cannot serve it.
template <class Ctx>
const data::Dataset& orderable_training_set(const Ctx& ctx, const char* who) {
  const data::Dataset* ds = ctx.data ? ctx.data->dataset() : nullptr;
  if (!ds || !ctx.data->can_order())
    throw config_error(std::string("fasttrain::methods::") + who +
                       ": needs a data source that exposes its dataset and can draw a given order (data::Loader)");
  return *ds;
}

/// Dataset indices sorted from the lowest score to the highest (ties by index).
inline std::vector<std::int64_t> easy_to_hard(const std::vector<float>& scores) {
  std::vector<std::int64_t> r(scores.size());
  std::iota(r.begin(), r.end(), std::int64_t{0});
  std::stable_sort(r.begin(), r.end(), [&](std::int64_t a, std::int64_t b) {
    return scores[static_cast<std::size_t>(a)] < scores[static_cast<std::size_t>(b)];
  });
  return r;
}
}  // namespace detail

}  // namespace fasttrain::methods
