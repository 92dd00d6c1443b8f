// fasttrain/methods/optim/ema.hpp -- EMA (optimization / retrofit).
//
// Keeps an exponential moving average of the weights during training and evaluates with it
// in place of the raw weights (Polyak and Juditsky 1992; as used by Tan and Le 2019,
// "EfficientNet", arXiv:1905.11946, and MosaicML Composer's EMA). Every `update_every`
// steps from `start` on:
//   shadow <- a * shadow + (1 - a) * weights,   a = 2^(-update_every / half_life)
// (the first update copies the weights). Evaluation runs on the averaged weights; at the end
// of fit() the model keeps them (`replace_at_end`), so what is saved or deployed is what was
// evaluated.
//
//   Trainer t{model, opt, loss, methods::EMA{{.half_life = 1000_ba}}};
//
// Parameters only: BatchNorm running statistics stay those of the live model (they are a
// moving average already); Composer also averages them.
//
// Hooks: after_step (update), eval_begin / eval_end (swap the averaged weights in and out: an
// O(1) buffer swap per tensor, no copy), fit_end (keep the averaged weights).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
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
  /// The averaged weights, in for_each_parameter order (empty before the first update), as
  /// host matrices (ParamBuffers::host: live on cpu::eigen, a fresh copy elsewhere).
  const std::vector<Eigen::MatrixXf>& averaged() const { return shadow_.host(); }

  void reset() {
    shadow_.clear();
    swapped_ = false;
  }

  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    if (!ctx.time.reached(opt_.start) || (ctx.time.batch + 1) % opt_.update_every != 0) return;
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    auto& shadow = shadow_.on<B>();
    if (shadow.empty()) {
      ctx.model.for_each_parameter([&](auto& p, auto&) { shadow.push_back(p); });
      return;
    }
    const auto a = static_cast<float>(smoothing(ctx.time.batches_per_epoch));
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) { fasttrain::detail::blend_into<B>(shadow[i++], p, a); });
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
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) { p = shadow[i++]; });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("half_life", opt_.half_life.value);
    ar.config("half_life_unit", opt_.half_life.unit);
    ar.config("update_every", opt_.update_every);
    ar.config("start", opt_.start.value);
    ar.config("start_unit", opt_.start.unit);
    shadow_.archive(ar, "averaged");
  }

 private:
  template <class Model>
  void swap_in(Model& model) {
    auto& shadow = shadow_.on<typename Model::backend>();
    std::size_t i = 0, n = 0;
    model.for_each_parameter([&](auto&, auto&) { ++n; });
    if (n != shadow.size())
      throw shape_error(fasttrain::detail::cat("fasttrain::methods::EMA: the model has ", n, " parameter tensors but ",
                                               shadow.size(), " are averaged (a different model?)"));
    model.for_each_parameter([&](auto& p, auto&) {
      auto& s = shadow[i++];
      if (s.rows() != p.rows() || s.cols() != p.cols())
        throw shape_error("fasttrain::methods::EMA: an averaged tensor's shape differs from the model's");
      p.swap(s);
    });
  }

  EMAOptions opt_;
  ParamBuffers shadow_;  // the averaged weights, on the model's backend
  bool swapped_ = false;
};

}  // namespace fasttrain::methods
