// fasttrain/methods/optim/ema.hpp -- EMA (optimization / retrofit).
//
// Keeps an exponential moving average of the weights during training and evaluates with it
// in place of the raw weights (Polyak and Juditsky 1992; as used by Tan and Le 2019,
// "EfficientNet", arXiv:1905.11946, and MosaicML Composer's EMA). Every `update_every`
// steps from `start` on, the first update copies the weights and the n-th after it does
//   shadow <- d * shadow + (1 - d) * weights,   d = min(a, (1 + n) / (10 + n)),
//   a = 2^(-update_every / half_life)
// (n = 1 gives d = 0.18, n = 90 gives 0.92: `warmup`, as TensorFlow's ExponentialMovingAverage
// with num_updates; with warmup = false, d = a). The warm-up keeps the average close to recent weights while the
// run is still short: with a = 2^(-1/1000) alone, after one Fashion-MNIST epoch (469 steps)
// the average still held 72% of the initial weights and evaluated at 0.118 accuracy.
//
// BatchNorm running statistics (of every layer with running_mean / running_var) are averaged
// with the same d, so evaluation uses statistics of the weights it evaluates, not of the live
// ones (as Composer and timm, which average every buffer).
//
// Evaluation runs on the averaged weights and statistics; at the end of fit() the model keeps
// them (`replace_at_end`), so what is saved or deployed is what was evaluated.
//
//   Trainer t{model, opt, loss, methods::EMA{{.half_life = 1000_ba}}};
//
// Hooks: after_step (update), eval_begin / eval_end (swap the averaged tensors in and out: an
// O(1) buffer swap per tensor, no copy), fit_end (keep the averaged tensors).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct EMAOptions {
  Duration half_life{1000.0, Unit::batch};  ///< steps (ba) or epochs (ep) for a weight to count half
  std::int64_t update_every = 1;            ///< steps between updates
  Duration start{0.0, Unit::dur};           ///< averaging starts once training has run this long
  bool replace_at_end = true;               ///< fit() ends with the averaged weights in the model
  bool warmup = true;                       ///< decay min(a, (1 + n) / (10 + n)) at the n-th update
};

class EMA {
 public:
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::after_step, event::eval_begin, event::eval_end, event::fit_end>;

  explicit EMA(EMAOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::EMA: ";
    require(opt_.half_life.value > 0 && std::isfinite(opt_.half_life.value) &&
                (opt_.half_life.unit == Unit::batch || opt_.half_life.unit == Unit::epoch),
            who, "half_life must be a positive duration in ba or ep, got ", opt_.half_life.str());
    require(opt_.update_every >= 1, who, "update_every must be >= 1, got ", opt_.update_every);
    require(opt_.start.value >= 0 && std::isfinite(opt_.start.value), who, "start must be >= 0, got ",
            opt_.start.str());
  }
  static std::string name() { return "EMA"; }
  const EMAOptions& options() const { return opt_; }

  /// The averaging factor per update for `batches_per_epoch` steps per epoch.
  double smoothing(std::int64_t batches_per_epoch) const {
    const double steps = opt_.half_life.unit == Unit::epoch
                             ? opt_.half_life.value * static_cast<double>(batches_per_epoch)
                             : opt_.half_life.value;
    return std::exp2(-static_cast<double>(opt_.update_every) / steps);
  }
  /// The decay of the update made after `n` updates (n >= 1), with `a` = smoothing().
  double decay(double a, std::int64_t n) const {
    return opt_.warmup ? std::min(a, (1.0 + static_cast<double>(n)) / (10.0 + static_cast<double>(n))) : a;
  }
  /// The averaged weights, in for_each_parameter order (empty before the first update), as
  /// host matrices (ParamBuffers::host: live on cpu::eigen, a fresh copy elsewhere).
  const std::vector<Eigen::MatrixXf>& averaged() const { return shadow_.host(); }
  /// The averaged BatchNorm running statistics (mean, variance per layer, in visit_layers
  /// order), as host matrices.
  const std::vector<Eigen::MatrixXf>& averaged_statistics() const { return stats_.host(); }
  /// Updates so far.
  std::int64_t updates() const { return updates_; }

  void reset() {
    shadow_.clear();
    stats_.clear();
    updates_ = 0;
    swapped_ = false;
  }

  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    if (!ctx.time.reached(opt_.start) || (ctx.time.batch + 1) % opt_.update_every != 0) return;
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    auto& shadow = shadow_.on<B>();
    auto& stats = stats_.on<B>();
    if (shadow.empty()) {
      ctx.model.for_each_parameter([&](auto& p, auto&) { shadow.push_back(p); });
      for_each_statistic(ctx.model, [&](auto& s) { stats.push_back(s); });
      updates_ = 1;
      return;
    }
    const auto d = static_cast<float>(decay(smoothing(ctx.time.batches_per_epoch), updates_));
    blend(ctx.model, shadow, stats, d);
    ++updates_;
  }
  template <class Ctx>
  void on_eval_begin(Ctx& ctx) {
    if (shadow_.empty() || swapped_) return;
    swap_in(ctx.model);
    swapped_ = true;
  }
  template <class Ctx>
  void on_eval_end(Ctx& ctx) {
    if (!swapped_) return;
    swap_in(ctx.model);  // swapping again puts the raw weights back
    swapped_ = false;
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    if (!opt_.replace_at_end || shadow_.empty()) return;
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    auto& shadow = shadow_.on<B>();
    auto& stats = stats_.on<B>();
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) { p = shadow[i++]; });
    i = 0;
    for_each_statistic(ctx.model, [&](auto& s) {
      if (i < stats.size()) s = stats[i];
      ++i;
    });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("half_life", opt_.half_life.value);
    ar.config("half_life_unit", opt_.half_life.unit);
    ar.config("update_every", opt_.update_every);
    ar.config("start", opt_.start.value);
    ar.config("start_unit", opt_.start.unit);
    ar.config("warmup", opt_.warmup);
    shadow_.archive(ar, "averaged");
    stats_.archive(ar, "statistics");
    ar("updates", updates_);
  }

 private:
  template <class Model, class F>
  static void for_each_statistic(Model& model, F&& f) {
    nn::for_each_running_statistic(model, f);
  }
  template <class Model, class M>
  static void blend(Model& model, std::vector<M>& shadow, std::vector<M>& stats, float d) {
    using B = typename Model::backend;
    std::size_t i = 0;
    model.for_each_parameter([&](auto& p, auto&) { fasttrain::detail::blend_into<B>(shadow[i++], p, d); });
    i = 0;
    for_each_statistic(model, [&](auto& s) { fasttrain::detail::blend_into<B>(stats[i++], s, d); });
  }
  template <class Model>
  void swap_in(Model& model) {
    using B = typename Model::backend;
    auto& shadow = shadow_.on<B>();
    auto& stats = stats_.on<B>();
    std::size_t n = 0, m = 0;
    model.for_each_parameter([&](auto&, auto&) { ++n; });
    for_each_statistic(model, [&](auto&) { ++m; });
    if (n != shadow.size() || m != stats.size())
      throw shape_error(fasttrain::detail::cat("fasttrain::methods::EMA: the model has ", n, " parameter tensors and ", m,
                                               " running statistics but ", shadow.size(), " and ", stats.size(),
                                               " are averaged (a different model?)"));
    auto swap = [](auto& p, auto& s) {
      if (s.rows() != p.rows() || s.cols() != p.cols())
        throw shape_error("fasttrain::methods::EMA: an averaged tensor's shape differs from the model's");
      p.swap(s);
    };
    std::size_t i = 0;
    model.for_each_parameter([&](auto& p, auto&) { swap(p, shadow[i++]); });
    i = 0;
    for_each_statistic(model, [&](auto& s) { swap(s, stats[i++]); });
  }

  EMAOptions opt_;
  ParamBuffers shadow_;   // the averaged weights, on the model's backend
  ParamBuffers stats_;    // the averaged BatchNorm running statistics
  std::int64_t updates_ = 0;
  bool swapped_ = false;
};

}  // namespace fasttrain::methods
