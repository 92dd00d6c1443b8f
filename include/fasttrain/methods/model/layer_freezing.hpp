// fasttrain/methods/model/layer_freezing.hpp -- LayerFreezing (model / remove + reorder).
//
// Progressive freezing of the first layers: Brock, Lim, Ritchie, Weston 2017, "FreezeOut:
// Accelerate Training by Progressively Freezing Layers" (arXiv:1706.04983); schedule and defaults
// after MosaicML Composer's LayerFreezing. At the end of each epoch from `start` on, the first
// floor(f * P) of the network's P top-level layers with parameters are frozen, where
//   f = level * (t - start) / (1 - start),   t = the elapsed fraction of the training budget.
// A frozen layer gets no backward pass (backpropagation stops above it: that is the saving,
// nn::Sequential::freeze_prefix) and its weights do not change: its gradients are zero, and
// after each step its weights are put back to what they were when it froze (so momentum and
// weight decay cannot move them). Its forward pass still runs in training mode.
//
//   Trainer t{model, opt, loss, methods::LayerFreezing{{.start = 0.5, .level = 1.0}}};
//
// Hooks: fit_begin (counts the layers), epoch_end (freezes more), before_step / after_step
// (keeps the frozen weights), fit_end (unfreezes). The model must be an nn::Sequential.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct LayerFreezingOptions {
  double start = 0.5;  ///< fraction of the budget after which freezing begins
  double level = 1.0;  ///< fraction of the parameterised layers frozen at the end of the budget
};

class LayerFreezing {
 public:
  static constexpr taxonomy tag{component::model, action::remove};
  /// Sorted after the other methods: after_step visits methods in reverse order, so this
  /// puts the frozen weights back before any other method (EMA, Lookahead, SWA) reads them.
  static constexpr bool runs_last = true;
  using events = fasttrain::events<event::fit_begin, event::epoch_end, event::before_step, event::after_step,
                                   event::fit_end>;

  explicit LayerFreezing(LayerFreezingOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::LayerFreezing: ";
    require(opt_.start >= 0 && opt_.start < 1, who, "start must be in [0, 1), got ", opt_.start);
    require(opt_.level > 0 && opt_.level <= 1, who, "level must be in (0, 1], got ", opt_.level);
  }
  static std::string name() { return "LayerFreezing"; }
  const LayerFreezingOptions& options() const { return opt_; }

  /// Parameterised layers to freeze at elapsed fraction t, of P.
  std::int64_t frozen_at(double t, std::int64_t P) const {
    if (t < opt_.start) return 0;
    const double f = std::min(1.0, opt_.level * (t - opt_.start) / (1.0 - opt_.start));
    return static_cast<std::int64_t>(std::floor(f * static_cast<double>(P) + 1e-9));
  }
  /// Parameterised layers frozen now.
  std::int64_t frozen() const { return frozen_; }

  void reset() {
    frozen_ = 0;
    saved_.clear();
  }

  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    check_model(ctx.model);
    ctx.model.freeze_prefix(0);
  }
  template <class Ctx>
  void on_epoch_end(Ctx& ctx) {
    const std::int64_t k = frozen_at(ctx.time.fraction(), parameterised(ctx.model));
    if (k > frozen_) {
      frozen_ = k;
      ctx.model.freeze_prefix(prefix_of(ctx.model, k));  // the next backward pass stops above them
      saved_.clear();  // taken at the next before_step, with the newly frozen layers
    }
  }
  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    if (frozen_ == 0) return;
    auto& model = ctx.model;
    const std::size_t prefix = prefix_of(model, frozen_);
    if (model.frozen_prefix() != prefix || saved_.empty()) {
      // (Re)freeze (after epoch_end, or a resume): their gradients may be stale, so zero
      // them; their weights are kept from now on.
      model.freeze_prefix(prefix);
      saved_.clear();
      auto& saved = saved_.on<typename std::decay_t<decltype(model)>::backend>();
      for_prefix(model, prefix, [&](auto& p, auto& g) {
        g.setZero();
        saved.push_back(p);
      });
    }
  }
  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    if (saved_.empty()) return;
    auto& saved = saved_.on<typename std::decay_t<decltype(ctx.model)>::backend>();
    std::size_t i = 0;
    for_prefix(ctx.model, ctx.model.frozen_prefix(), [&](auto& p, auto&) { p = saved[i++]; });
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    ctx.model.freeze_prefix(0);
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("start", opt_.start);
    ar.config("level", opt_.level);
    ar("frozen", frozen_);
    if constexpr (!Archive::saving) saved_.clear();  // the frozen weights are the model's own
  }

 private:
  template <class Model>
  static void check_model(Model&) {
    static_assert(requires(Model& m) { m.freeze_prefix(std::size_t{}); m.frozen_prefix(); },
                  "fasttrain::methods::LayerFreezing: the model must be an nn::Sequential (it freezes a prefix of "
                  "its top-level layers)");
  }
  template <class Model>
  static std::int64_t parameterised(Model&) {
    std::int64_t P = 0;
    for (std::size_t i = 0; i < Model::num_layers; ++i) P += Model::layer_has_parameters(i);
    return P;
  }
  // The number of top-level layers that holds the first k parameterised ones.
  template <class Model>
  static std::size_t prefix_of(Model&, std::int64_t k) {
    std::size_t i = 0;
    for (std::int64_t seen = 0; i < Model::num_layers && seen < k; ++i) seen += Model::layer_has_parameters(i);
    return i;
  }
  template <class Model, class F>
  static void for_prefix(Model& model, std::size_t prefix, F&& f) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      ((I < prefix ? model.template layer<I>().for_each_parameter(f) : void()), ...);
    }(std::make_index_sequence<Model::num_layers>{});
  }

  LayerFreezingOptions opt_;
  std::int64_t frozen_ = 0;
  ParamBuffers saved_;  // the frozen layers' weights, on the model's backend
};

}  // namespace fasttrain::methods
