// fasttrain/methods/optim/lookahead.hpp -- Lookahead (optimization / retrofit).
//
// Wraps whatever optimizer the recipe uses (Zhang, Lucas, Hinton, Ba 2019, "Lookahead
// Optimizer: k steps forward, 1 step back", arXiv:1907.08610). The optimizer moves the
// model's ("fast") weights as usual; a second, "slow" copy of the weights follows them in
// one step every k steps, and the fast weights restart from it:
//   every k steps:   slow <- slow + alpha * (fast - slow),   fast <- slow
// The slow weights start as the model's weights at the start of fit(), so the first
// synchronisation comes after k optimizer steps. The optimizer's own state (momentum,
// moments) carries on across synchronisations, as in the paper's experiments.
//
//   Trainer t{model, opt, loss, methods::Lookahead{{.k = 5, .alpha = 0.5f}}};
//
// Parameters only: BatchNorm running statistics stay those of the live model. Evaluation and
// the end of fit() see the model's weights, which between synchronisations are the fast ones.
//
// Hooks: fit_begin (copy the weights into the slow ones), after_step (count steps, synchronise
// after every k-th). With EMA in the same recipe, the synchronised weights are what EMA
// averages (runs_after below: after_step visits methods in reverse order).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

class EMA;  // fasttrain/methods/optim/ema.hpp

struct LookaheadOptions {
  std::int64_t k = 5;  ///< optimizer steps between synchronisations
  float alpha = 0.5f;  ///< the slow weights' step toward the fast ones, in (0, 1]
};

class Lookahead {
 public:
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::fit_begin, event::after_step>;
  /// Sorted after EMA, so at after_step (reverse order) it synchronises before EMA averages.
  using runs_after = type_list<EMA>;

  explicit Lookahead(LookaheadOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::Lookahead: ";
    require(opt_.k >= 1, who, "k must be >= 1, got ", opt_.k);
    require(opt_.alpha > 0 && opt_.alpha <= 1, who, "alpha must be in (0, 1], got ", opt_.alpha);
  }
  static std::string name() { return "Lookahead"; }
  const LookaheadOptions& options() const { return opt_; }

  /// The slow weights, in for_each_parameter order (empty before fit_begin), as host matrices
  /// (ParamBuffers::host: live on cpu::eigen, a fresh copy elsewhere).
  const std::vector<Eigen::MatrixXf>& slow() const { return slow_.host(); }
  /// Synchronisations done so far in this fit.
  std::int64_t syncs() const { return syncs_; }

  void reset() {
    slow_.clear();
    syncs_ = 0;
  }

  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    reset();
    auto& slow = slow_.on<typename std::decay_t<decltype(ctx.model)>::backend>();
    ctx.model.for_each_parameter([&](auto& p, auto&) { slow.push_back(p); });
  }

  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    // Driven without fit_begin (by hand), the first step's result becomes the slow weights.
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    if (slow_.empty()) on_fit_begin(ctx);
    if ((ctx.time.batch + 1) % opt_.k != 0) return;
    auto& slow = slow_.on<B>();
    std::size_t n = 0;
    ctx.model.for_each_parameter([&](auto&, auto&) { ++n; });
    if (n != slow.size())
      throw shape_error(fasttrain::detail::cat("fasttrain::methods::Lookahead: the model has ", n,
                                               " parameter tensors but ", slow.size(),
                                               " slow ones are kept (a different model?)"));
    const float a = opt_.alpha;
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) {
      auto& s = slow[i++];
      if (s.rows() != p.rows() || s.cols() != p.cols())
        throw shape_error("fasttrain::methods::Lookahead: a slow tensor's shape differs from the model's");
      synchronise<B>(s, p, a);
    });
    ++syncs_;
  }

  /// Saves or restores the hyperparameters (checked on restore), the slow weights and the
  /// number of synchronisations. The step count is the Trainer's Time, which it saves.
  template <class Archive>
  void state(Archive& ar) {
    ar.config("k", opt_.k);
    ar.config("alpha", opt_.alpha);
    slow_.archive(ar, "slow");
    ar("syncs", syncs_);
  }

  /// s += a (p - s); p = s, element-wise on the backend (public for nvcc's device lambdas).
  template <class B, class M>
  static void synchronise(M& s, M& p, float a) {
    B::apply([=] FASTTRAIN_HD(float& si, float& pi) {
      si += a * (pi - si);
      pi = si;
    }, s, p);
  }

 private:
  LookaheadOptions opt_;
  ParamBuffers slow_;  // on the model's backend
  std::int64_t syncs_ = 0;
};

}  // namespace fasttrain::methods
