// fasttrain/methods/data/selective_backprop.hpp -- SelectiveBackprop (data / remove).
//
// Trains each step only on the examples of the batch the model finds hardest (Jiang et al.
// 2019, "Accelerating Deep Learning by Focusing on the Biggest Losers", arXiv:1910.00762).
// A forward pass in evaluation mode scores every sample of the batch by its loss; the
// batch is then cut down to `keep` of its samples before the training forward, so the
// training forward and backward run on fewer samples. The cost per step is one scoring
// forward on the whole batch plus forward + backward on the kept part: with keep = 0.5,
// roughly 1/3 + 1/2 of a full step.
//
//   Trainer t{model, opt, loss, methods::SelectiveBackprop{{.keep = 0.5f}}};
//
// Selection (`selection`):
//   proportional (default): `keep * n` samples drawn without replacement, each with weight
//     p^(1/keep - 1) where p in (0, 1) is the percentile of its loss in the batch -- the
//     paper's CDF-based rule as Composer implements it; high losses are likely, low ones
//     still possible.
//   top_k: exactly the `keep * n` samples with the highest loss.
// It is active from `start` to `end` (fractions of the training budget), and every
// `interrupt`-th step in that window trains on the whole batch (0: none does).
//
// Hook: before_forward (cuts ctx.batch: inputs, labels and indices). Time still counts the
// whole batch as drawn. Runs before the methods that change inputs (MixUp, CutMix, CutOut,
// RandAugment), so samples are scored clean and only kept ones are augmented.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/methods/data/fwd.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

/// The per-sample loss SelectiveBackprop ranks samples by.
enum class SampleLoss {
  cross_entropy,  ///< -log softmax(z)_y
  squared_error,  ///< mean over outputs of (z - onehot(y))^2
};

struct SelectiveBackpropOptions {
  float start = 0.5f;  ///< fraction of the training budget at which selection starts, in [0, 1]
  float end = 0.9f;    ///< ... and stops, in [start, 1]
  float keep = 0.5f;   ///< fraction of each batch trained on, in (0, 1]
  int interrupt = 2;   ///< every interrupt-th step in the window trains on the whole batch; 0: none
  enum class Selection { proportional, top_k } selection = Selection::proportional;
  SampleLoss score = SampleLoss::cross_entropy;  ///< use the loss the model is trained with
  std::uint64_t seed = 0;  ///< of the method's own generator (proportional selection)
};

namespace detail {
/// Per-sample losses of `outputs` (one column per sample) against class labels.
template <class B>
void sample_losses(const typename B::matrix& Z, const typename B::labels& y, SampleLoss kind,
                   std::vector<float>& out) {
  const auto n = Z.cols(), k = Z.rows();
  if (const auto j = B::first_bad_label(y, k); j >= 0)
    throw shape_error(fasttrain::detail::cat("fasttrain::methods::SelectiveBackprop: label ", y[static_cast<std::size_t>(j)],
                                             " of sample ", j, " is out of range [0, ", k, ")"));
  out.resize(static_cast<std::size_t>(n));
  typename B::matrix p, lse;
  if (kind == SampleLoss::cross_entropy) B::softmax_columns(Z, p, &lse);  // lse: log sum exp, max-shifted
  for (typename B::index j = 0; j < n; ++j) {
    const auto label = y[static_cast<std::size_t>(j)];
    out[static_cast<std::size_t>(j)] = kind == SampleLoss::cross_entropy
                                           ? lse(0, j) - Z(label, j)
                                           : (Z.col(j).squaredNorm() - 2.f * Z(label, j) + 1.f) / static_cast<float>(k);  // ||z - e_y||^2 / k
  }
}
}  // namespace detail

class SelectiveBackprop {
 public:
  using Options = SelectiveBackpropOptions;
  using Selection = Options::Selection;
  static constexpr taxonomy tag{component::data, action::remove};
  using events = fasttrain::events<event::before_forward>;
  using runs_before = type_list<MixUp, CutMix, CutOut, RandAugment>;

  explicit SelectiveBackprop(Options o = {}) : opt_(o), rng_(o.seed) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::SelectiveBackprop: ";
    require(opt_.start >= 0.f && opt_.start <= 1.f, who, "start must be in [0, 1], got ", opt_.start);
    require(opt_.end >= opt_.start && opt_.end <= 1.f, who, "end must be in [start, 1] = [", opt_.start, ", 1], got ",
            opt_.end);
    require(opt_.keep > 0.f && opt_.keep <= 1.f, who, "keep must be in (0, 1], got ", opt_.keep);
    require(opt_.interrupt >= 0, who, "interrupt must be >= 0 (0: no full batches in the window), got ",
            opt_.interrupt);
  }
  static std::string name() { return "SelectiveBackprop"; }
  const Options& options() const { return opt_; }

  /// Whether the step at `time` trains on a selection (Composer's rule: inside [start, end)
  /// of the budget, and not every interrupt-th step).
  bool active(const Time& time) const {
    const double f = time.fraction();
    if (!(f >= opt_.start && f < opt_.end)) return false;
    return opt_.interrupt == 0 || (time.batch + 1) % opt_.interrupt != 0;
  }
  /// Positions (in the batch as loaded) of the samples the last active step kept, ascending.
  const std::vector<std::int64_t>& last_selection() const { return kept_; }
  /// The per-sample losses the last active step scored.
  const std::vector<float>& last_losses() const { return losses_; }

  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    using B = typename Ctx::backend;
    auto& batch = ctx.batch;
    const std::int64_t n = batch.size();
    if (!active(ctx.time) || n < 2) return;
    const auto k = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::floor(opt_.keep * static_cast<float>(n))));
    if (k >= n) return;

    const auto& scores = ctx.model.forward(batch.inputs, nn::Mode::eval);
    if constexpr (std::is_same_v<B, cpu::eigen>)
      detail::sample_losses<B>(scores.data, batch.labels, opt_.score, losses_);
    else  // scored on the host (classes x batch floats)
      detail::sample_losses<cpu::eigen>(host_copy<B>(scores.data), batch.labels, opt_.score, losses_);
    select(n, k);
    with_host_tensor<B>(batch.inputs, [&](cpu::eigen::tensor& in) { keep_columns(in.data, batch, k); });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("start", opt_.start);
    ar.config("end", opt_.end);
    ar.config("keep", opt_.keep);
    ar.config("interrupt", opt_.interrupt);
    ar.config("selection", opt_.selection);
    ar.config("score", opt_.score);
    ar("rng", rng_);
  }

 private:
  // Cuts the batch (host inputs X, its labels and indices) down to the kept columns, in their
  // original order.
  template <class Batch>
  void keep_columns(cpu::eigen::matrix& X, Batch& batch, std::int64_t k) {
    inputs_.resize(X.rows(), static_cast<Eigen::Index>(k));
    labels_.resize(static_cast<std::size_t>(k));
    indices_.resize(static_cast<std::size_t>(k));
    for (std::int64_t i = 0; i < k; ++i) {
      const auto j = kept_[static_cast<std::size_t>(i)];
      inputs_.col(i) = X.col(j);
      labels_[static_cast<std::size_t>(i)] = batch.labels[static_cast<std::size_t>(j)];
      indices_[static_cast<std::size_t>(i)] =
          static_cast<std::size_t>(j) < batch.indices.size() ? batch.indices[static_cast<std::size_t>(j)] : -1;
    }
    X.swap(inputs_);
    batch.labels.swap(labels_);
    batch.indices.swap(indices_);
  }

  // Chooses k of the n positions by losses_ into kept_ (ascending).
  void select(std::int64_t n, std::int64_t k) {
    order_.resize(static_cast<std::size_t>(n));
    std::iota(order_.begin(), order_.end(), std::int64_t{0});
    // Ascending loss; ties by position, so the choice is deterministic.
    std::stable_sort(order_.begin(), order_.end(), [&](std::int64_t a, std::int64_t b) {
      return losses_[static_cast<std::size_t>(a)] < losses_[static_cast<std::size_t>(b)];
    });
    kept_.clear();
    if (opt_.selection == Selection::top_k) {
      kept_.assign(order_.end() - k, order_.end());
    } else {
      // Weighted sampling without replacement (Efraimidis-Spirakis): key u^(1/w), keep the
      // k largest keys; the same law as drawing one at a time in proportion to weight.
      const double expo = 1.0 / static_cast<double>(opt_.keep) - 1.0;
      keys_.resize(static_cast<std::size_t>(n));
      for (std::int64_t r = 0; r < n; ++r) {
        const double pct = (static_cast<double>(r) + 0.5) / static_cast<double>(n);
        const double w = std::pow(pct, expo);
        double u = static_cast<double>(rng_.uniform());
        if (u <= 0.0) u = 0x1.0p-25;
        keys_[static_cast<std::size_t>(r)] = std::log(u) / w;  // log of u^(1/w): same order
      }
      rank_.resize(static_cast<std::size_t>(n));
      std::iota(rank_.begin(), rank_.end(), std::int64_t{0});
      std::partial_sort(rank_.begin(), rank_.begin() + k, rank_.end(), [&](std::int64_t a, std::int64_t b) {
        return keys_[static_cast<std::size_t>(a)] > keys_[static_cast<std::size_t>(b)];
      });
      for (std::int64_t i = 0; i < k; ++i) kept_.push_back(order_[static_cast<std::size_t>(rank_[static_cast<std::size_t>(i)])]);
    }
    std::sort(kept_.begin(), kept_.end());
  }

  Options opt_;
  Rng rng_;
  std::vector<float> losses_;
  std::vector<double> keys_;
  std::vector<std::int64_t> order_, rank_, kept_, indices_;
  cpu::eigen::labels labels_;
  cpu::eigen::matrix inputs_;
};

}  // namespace fasttrain::methods
