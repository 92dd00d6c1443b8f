// fasttrain/methods/model/stochastic_depth.hpp -- StochasticDepth (model / remove).
//
// Huang, Sun, Liu, Sedra, Weinberger 2016, "Deep Networks with Stochastic Depth"
// (arXiv:1603.09382); defaults after MosaicML Composer's StochasticDepth (block mode).
// Before every training step each residual block of the model (every nn::Residual, found by
// nn::visit_layers, numbered l = 1..L from the input) is dropped with probability p_l: its
// body neither runs forward nor backward, the block passes its shortcut on. A block that is
// kept scales its body's output by 1 / (1 - p_l), so evaluation runs the whole network
// unscaled (the "inverted" form, as dropout; the paper scales at test time instead).
//   linear distribution: p_l = drop_rate * l / L     (the paper's linear decay rule)
//   uniform:             p_l = drop_rate
// During `warmup` the rates grow linearly from 0 to these values.
//
//   Trainer t{model, opt, loss, methods::StochasticDepth{{.drop_rate = 0.2f}}};
//
// What it saves: the dropped bodies' forward and backward passes, on average
// sum(p_l) / L of the blocks' compute (0.1 of it for drop_rate 0.2, linear). It needs a model
// with nn::Residual blocks (a config_error at fit_begin otherwise).
//
// Hooks: fit_begin (finds the blocks), batch_begin (draws this step's blocks), fit_end (leaves
// every block plain).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

enum class DropDistribution { linear, uniform };

struct StochasticDepthOptions {
  float drop_rate = 0.2f;  ///< drop probability of the deepest block (linear) or of every block (uniform)
  DropDistribution distribution = DropDistribution::linear;
  Duration warmup{0.0, Unit::dur};  ///< the rates grow linearly from 0 over this long
  std::uint64_t seed = 0;           ///< of the draws (each run of fit() restarts from it)
};

class StochasticDepth {
 public:
  static constexpr taxonomy tag{component::model, action::remove};
  using events = fasttrain::events<event::fit_begin, event::batch_begin, event::fit_end>;

  explicit StochasticDepth(StochasticDepthOptions o = {}) : opt_(o), rng_(o.seed) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::StochasticDepth: ";
    require(opt_.drop_rate >= 0.f && opt_.drop_rate < 1.f, who, "drop_rate must be in [0, 1), got ", opt_.drop_rate);
    require(opt_.warmup.value >= 0 && std::isfinite(opt_.warmup.value), who, "warmup must be >= 0, got ",
            opt_.warmup.str());
  }
  static std::string name() { return "StochasticDepth"; }
  const StochasticDepthOptions& options() const { return opt_; }

  /// Drop probability of block l (1-based) of L at the full rate.
  double rate(std::int64_t l, std::int64_t L) const {
    if (opt_.distribution == DropDistribution::uniform) return opt_.drop_rate;
    return static_cast<double>(opt_.drop_rate) * static_cast<double>(l) / static_cast<double>(L);
  }
  /// Factor on the rates at `time` (warmup).
  double warmup_factor(const Time& time) const {
    if (opt_.warmup.value <= 0) return 1.0;
    return std::min(1.0, time.ratio(opt_.warmup));
  }
  /// Residual blocks found at fit_begin.
  std::int64_t blocks() const { return blocks_; }
  /// Which blocks run in the current step (true = kept), in depth order.
  const std::vector<bool>& kept() const { return kept_; }

  void reset() {
    rng_ = Rng(opt_.seed);
    blocks_ = 0;
    kept_.clear();
  }

  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    blocks_ = 0;
    nn::visit_layers(ctx.model, [&](auto& l) {
      if constexpr (nn::SkippableBody<decltype(l)>) ++blocks_;
    });
    if (blocks_ == 0)
      throw config_error("fasttrain::methods::StochasticDepth: the model has no nn::Residual block to drop");
    kept_.assign(static_cast<std::size_t>(blocks_), true);
  }
  template <class Ctx>
  void on_batch_begin(Ctx& ctx) {
    const double f = warmup_factor(ctx.time);
    std::int64_t l = 0;
    nn::visit_layers(ctx.model, [&](auto& block) {
      if constexpr (nn::SkippableBody<decltype(block)>) {
        const double p = f * rate(++l, blocks_);
        const bool keep = static_cast<double>(rng_.uniform()) >= p;  // p = 0 keeps always
        kept_[static_cast<std::size_t>(l - 1)] = keep;
        block.set_body(keep, keep ? static_cast<float>(1.0 / (1.0 - p)) : 1.f);
      }
    });
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    nn::visit_layers(ctx.model, [](auto& block) {
      if constexpr (nn::SkippableBody<decltype(block)>) block.set_body(true, 1.f);
    });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("drop_rate", opt_.drop_rate);
    ar.config("distribution", opt_.distribution);
    ar.config("warmup", opt_.warmup.value);
    ar.config("warmup_unit", opt_.warmup.unit);
    ar.config("seed", opt_.seed);
    ar("rng", rng_);
  }

 private:
  StochasticDepthOptions opt_;
  Rng rng_;
  std::int64_t blocks_ = 0;
  std::vector<bool> kept_;
};

}  // namespace fasttrain::methods
