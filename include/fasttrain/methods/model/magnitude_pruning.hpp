// fasttrain/methods/model/magnitude_pruning.hpp -- MagnitudePruning (model / remove).
//
// Gradual magnitude pruning (Zhu and Gupta 2017, "To prune, or not to prune: exploring the
// efficacy of pruning for model compression", arXiv:1710.01878): during training, the
// weights of smallest magnitude are zeroed and kept at zero, on a schedule that prunes
// fast at first and slowly towards the end,
//   s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t1 - t0))^3    for t in [t0, t1]
// (s_i before t0, s_f after t1). At each step in [start, end) that is a multiple of
// `update_every`, and once more at the first step at or after `end` (at s_f), each prunable
// tensor's mask is recomputed: its round(s(t) * n) entries of smallest |w| are masked.
// Masked weights are zero, so they stay among the smallest and a mask only grows.
//
//   Trainer t{model, opt, loss, methods::MagnitudePruning{{.target_sparsity = 0.75f}}};
//
// Prunable tensors are the parameters with more than one column: the weights of Linear and
// Conv2d. Biases and BatchNorm's scale and shift (one column) are never pruned. `scope`
// prunes every tensor to s(t) (per_tensor, the paper's choice) or ranks the entries of all
// prunable tensors together under one threshold (global).
//
// A compression method: the forward and backward passes still run dense GEMMs over the
// zeros, so a step costs what it did (plus the masking). Saving time needs sparse kernels
// or structured pruning (whole channels), neither of which this library has.
//
// Hooks: before_step (masks the gradients: the pruned network's own gradient), after_step
// (masks the weights the optimizer, and Lookahead, just wrote), batch_end (recomputes the
// masks when due; Time has advanced there, so s is that of the steps taken), fit_end (masks
// the final weights again, after EMA has put its average in).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

// Named in the ordering traits below; declared only (is_same works on incomplete types).
class EMA;
class GradientClipping;
class Lookahead;
class SWA;

/// Which entries MagnitudePruning ranks against each other.
enum class PruningScope {
  per_tensor,  ///< each prunable tensor to the scheduled sparsity, by its own threshold
  global       ///< all prunable tensors together, by one threshold
};

/// Sets `masks[i]` (same shape as `*weights[i]`) to 0 on the round(sparsity * n) entries of
/// smallest |w| among all entries of `weights` together (n: their total size), and to 1
/// elsewhere. Ties in |w| go first to entries already 0 in `masks` (a mask of the wrong size
/// counts as all ones), then by tensor and column-major index: the count is exact and the
/// result deterministic.
inline void magnitude_masks(std::span<const cpu::eigen::matrix* const> weights, double sparsity,
                            std::span<cpu::eigen::matrix> masks) {
  using fasttrain::detail::require;
  require(weights.size() == masks.size(), "fasttrain::methods::magnitude_masks: ", weights.size(), " weights but ",
          masks.size(), " masks");
  require(sparsity >= 0 && sparsity <= 1, "fasttrain::methods::magnitude_masks: sparsity must be in [0, 1], got ",
          sparsity);
  std::uint64_t n = 0;
  for (const auto* w : weights) n += static_cast<std::uint64_t>(w->size());
  require(n < (std::uint64_t{1} << 32), "fasttrain::methods::magnitude_masks: ", n,
          " entries; at most 2^32 - 1 are ranked together");
  // One 64-bit key per entry, distinct and ordered like (|w|, kept before, position):
  // a non-negative float's bits order like its value.
  auto key = [](float w, bool kept, std::uint64_t pos) {
    return (std::uint64_t{std::bit_cast<std::uint32_t>(std::fabs(w))} << 33) | (std::uint64_t{kept} << 32) | pos;
  };
  auto for_each_entry = [&](auto&& f) {
    std::uint64_t pos = 0;
    for (std::size_t t = 0; t < weights.size(); ++t) {
      const auto& w = *weights[t];
      const auto& m = masks[t];
      const bool had = m.rows() == w.rows() && m.cols() == w.cols();
      for (Eigen::Index i = 0; i < w.size(); ++i, ++pos) f(t, i, key(w.data()[i], !had || m.data()[i] != 0.f, pos));
    }
  };
  const auto k = static_cast<std::uint64_t>(std::llround(sparsity * static_cast<double>(n)));
  std::uint64_t pivot = std::numeric_limits<std::uint64_t>::max();  // k == n: every key is below it
  if (k < n) {
    std::vector<std::uint64_t> keys;
    keys.reserve(static_cast<std::size_t>(n));
    for_each_entry([&](std::size_t, Eigen::Index, std::uint64_t kk) { keys.push_back(kk); });
    std::nth_element(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(k), keys.end());
    pivot = keys[static_cast<std::size_t>(k)];
  }
  // Masks are written after every key is read: a mask's old zeros are part of the ranking.
  std::vector<cpu::eigen::matrix> out(weights.size());
  for (std::size_t t = 0; t < weights.size(); ++t) out[t].resize(weights[t]->rows(), weights[t]->cols());
  for_each_entry([&](std::size_t t, Eigen::Index i, std::uint64_t kk) { out[t].data()[i] = kk < pivot ? 0.f : 1.f; });
  for (std::size_t t = 0; t < weights.size(); ++t) masks[t].swap(out[t]);
}

/// Whether MagnitudePruning prunes a parameter tensor: more than one column (Linear and
/// Conv2d weights; not biases or BatchNorm's scale and shift).
template <class M>
bool prunable(const M& p) { return p.cols() > 1; }

/// The fraction of exact zeros among the entries of the model's prunable tensors.
template <class Model>
double weight_sparsity(Model& model) {
  std::int64_t zeros = 0, n = 0;
  using B = typename Model::backend;
  model.for_each_parameter([&](auto& p, auto&) {
    if (!prunable(p)) return;
    Eigen::MatrixXf h(p.rows(), p.cols());
    B::to_host(p, h.data());
    zeros += static_cast<std::int64_t>((h.array() == 0.f).count());
    n += static_cast<std::int64_t>(p.size());
  });
  return n ? static_cast<double>(zeros) / static_cast<double>(n) : 0.0;
}

struct MagnitudePruningOptions {
  float target_sparsity = 0.5f;          ///< s_f: fraction of the prunable weights zeroed from `end` on, in [0, 1)
  float initial_sparsity = 0.f;          ///< s_i: the schedule's value at `start`, in [0, target_sparsity]
  Duration start{0.1, Unit::dur};        ///< t0: the first mask update is the first due one from here
  Duration end{0.7, Unit::dur};          ///< t1: s_f is reached at the first step at or after it (same unit as start)
  std::int64_t update_every = 100;       ///< steps between mask updates
  PruningScope scope = PruningScope::per_tensor;
};

class MagnitudePruning {
 public:
  static constexpr taxonomy tag{component::model, action::remove};
  using events = fasttrain::events<event::before_step, event::after_step, event::batch_end, event::fit_end>;
  /// At fit_end after EMA, which may put an unmasked average into the model; at after_step,
  /// a reversed event, before it, so the average is taken over masked weights.
  using runs_after = type_list<EMA>;
  /// At before_step before GradientClipping, which then sees the pruned network's gradient;
  /// at after_step after Lookahead, whose synchronisation writes unmasked slow weights; at
  /// batch_end before SWA, which then averages the weights under this step's new masks.
  using runs_before = type_list<GradientClipping, Lookahead, SWA>;

  explicit MagnitudePruning(MagnitudePruningOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::MagnitudePruning: ";
    require(opt_.target_sparsity >= 0.f && opt_.target_sparsity < 1.f, who, "target_sparsity must be in [0, 1), got ",
            opt_.target_sparsity);
    require(opt_.initial_sparsity >= 0.f && opt_.initial_sparsity <= opt_.target_sparsity, who,
            "initial_sparsity must be in [0, target_sparsity = ", opt_.target_sparsity, "], got ",
            opt_.initial_sparsity);
    require(opt_.start.value >= 0 && std::isfinite(opt_.start.value), who, "start must be >= 0, got ",
            opt_.start.str());
    require(opt_.end.unit == opt_.start.unit, who, "end must be in the same unit as start, got start = ",
            opt_.start.str(), " and end = ", opt_.end.str());
    require(opt_.end.value > opt_.start.value && std::isfinite(opt_.end.value), who,
            "end must be later than start = ", opt_.start.str(), ", got ", opt_.end.str());
    require(opt_.end.unit != Unit::dur || opt_.end.value <= 1, who,
            "end must be <= 1dur (the whole budget) to be reached, got ", opt_.end.str());
    require(opt_.update_every >= 1, who, "update_every must be >= 1, got ", opt_.update_every);
  }
  static std::string name() { return "MagnitudePruning"; }
  const MagnitudePruningOptions& options() const { return opt_; }

  /// The schedule s(t) at time `t`.
  double sparsity_at(const Time& t) const {
    const double t0 = opt_.start.value, t1 = opt_.end.value, x = t.in(opt_.start.unit);
    const double si = opt_.initial_sparsity, sf = opt_.target_sparsity;
    if (x <= t0) return si;
    if (x >= t1) return sf;
    const double r = 1.0 - (x - t0) / (t1 - t0);
    return sf + (si - sf) * r * r * r;
  }
  /// The masks (1 kept, 0 pruned) of the prunable tensors, in for_each_parameter order, as
  /// host matrices (ParamBuffers::host); empty before the first update.
  const std::vector<Eigen::MatrixXf>& masks() const { return masks_.host(); }
  /// The scheduled sparsity the masks were last computed for (0 before the first update).
  double current_target() const { return target_; }
  /// Whether the last update, the one at `end`, has been made (the masks are final).
  bool finished() const { return final_; }
  /// The fraction of the prunable entries that the masks zero (0 before the first update).
  double sparsity() const {
    std::int64_t masked = 0, n = 0;
    for (const auto& m : masks_.host()) {
      masked += static_cast<std::int64_t>((m.array() == 0.f).count());
      n += static_cast<std::int64_t>(m.size());
    }
    return n ? static_cast<double>(masked) / static_cast<double>(n) : 0.0;
  }

  void reset() {
    masks_.clear();
    target_ = 0.0;
    final_ = false;
  }

  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    apply(ctx.model, [](auto&, auto& g) -> auto& { return g; });
  }
  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    apply(ctx.model, [](auto& p, auto&) -> auto& { return p; });
  }
  template <class Ctx>
  void on_batch_end(Ctx& ctx) {
    const Time& t = ctx.time;
    if (final_ || !t.reached(opt_.start)) return;
    const bool at_end = t.reached(opt_.end);
    if (!at_end && t.batch % opt_.update_every != 0) return;
    update(ctx.model, sparsity_at(t));
    final_ = at_end;
    apply(ctx.model, [](auto& p, auto&) -> auto& { return p; });
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    apply(ctx.model, [](auto& p, auto&) -> auto& { return p; });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("target_sparsity", opt_.target_sparsity);
    ar.config("initial_sparsity", opt_.initial_sparsity);
    ar.config("start", opt_.start.value);
    ar.config("start_unit", opt_.start.unit);
    ar.config("end", opt_.end.value);
    ar.config("end_unit", opt_.end.unit);
    ar.config("update_every", opt_.update_every);
    ar.config("scope", opt_.scope);
    masks_.archive(ar, "masks");
    ar("target", target_);
    ar("final", final_);
  }

  /// x *= mask, element-wise on the backend (public for nvcc's device lambdas).
  template <class B, class M>
  static void multiply(M& x, const M& mask) {
    B::apply([] FASTTRAIN_HD(float& xi, const float& mi) { xi *= mi; }, x, mask);
  }

 private:
  // Recomputes the masks for sparsity s from the model's current weights. The ranking runs
  // on the host, on copies of the weights and masks (every update_every steps); the masks
  // then go back to the model's backend.
  template <class Model>
  void update(Model& model, double s) {
    using B = typename Model::backend;
    std::vector<Eigen::MatrixXf> weights;
    model.for_each_parameter([&](auto& p, auto&) {
      if (!prunable(p)) return;
      weights.emplace_back(p.rows(), p.cols());
      B::to_host(p, weights.back().data());
    });
    if (!masks_.empty()) check(model);
    std::vector<Eigen::MatrixXf> masks = masks_.to_host();
    masks.resize(weights.size());
    std::vector<const Eigen::MatrixXf*> w;
    for (const auto& x : weights) w.push_back(&x);
    if (opt_.scope == PruningScope::global) {
      magnitude_masks(w, s, masks);
    } else {
      for (std::size_t i = 0; i < w.size(); ++i)
        magnitude_masks(std::span(&w[i], 1), s, std::span(&masks[i], 1));
    }
    auto& out = masks_.on<B>();
    out.resize(masks.size());
    for (std::size_t i = 0; i < masks.size(); ++i) B::from_host(masks[i].data(), masks[i].rows(), masks[i].cols(), out[i]);
    target_ = s;
  }

  // Multiplies the tensor pick(value, gradient) of each prunable parameter by its mask.
  template <class Model, class Pick>
  void apply(Model& model, Pick pick) {
    if (masks_.empty()) return;
    check(model);
    using B = typename Model::backend;
    auto& masks = masks_.on<B>();
    std::size_t i = 0;
    model.for_each_parameter([&](auto& p, auto& g) {
      if (!prunable(p)) return;
      multiply<B>(pick(p, g), masks[i++]);
    });
  }

  // The masks must fit the model's prunable tensors (a checkpoint of another model would not).
  template <class Model>
  void check(Model& model) {
    const auto& masks = masks_.on<typename Model::backend>();
    std::size_t n = 0;
    bool shapes = true;
    model.for_each_parameter([&](auto& p, auto&) {
      if (!prunable(p)) return;
      if (n < masks.size() && (masks[n].rows() != p.rows() || masks[n].cols() != p.cols())) shapes = false;
      ++n;
    });
    if (n != masks_.size())
      throw shape_error(fasttrain::detail::cat("fasttrain::methods::MagnitudePruning: the model has ", n,
                                               " prunable tensors but there are ", masks_.size(),
                                               " masks (a different model?)"));
    if (!shapes)
      throw shape_error("fasttrain::methods::MagnitudePruning: a mask's shape differs from its tensor's");
  }

  MagnitudePruningOptions opt_;
  ParamBuffers masks_;  // on the model's backend
  double target_ = 0.0;
  bool final_ = false;
};

}  // namespace fasttrain::methods
