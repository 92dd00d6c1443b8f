// fasttrain/methods/optim/sam.hpp -- SAM (optimization / retrofit).
//
// Sharpness-aware minimisation: Foret, Kleiner, Mobahi, Neyshabur 2021, "Sharpness-Aware
// Minimization for Efficiently Improving Generalization" (arXiv:2010.01412); defaults and the
// `interval` option after MosaicML Composer's SAM. On a SAM step the optimizer steps with the
// gradient taken at the worst nearby point instead of at the weights w:
//   e = rho * g / (||g|| + epsilon)          g: this step's gradient, ||.|| over all parameters
//   g_SAM = dL/dw evaluated at w + e         (a second forward and backward pass)
// and w itself is left unchanged for the optimizer. Every `interval`-th step is a SAM step
// (Time.batch a multiple of it); the others are plain, which bounds the extra cost to
// 1/interval of the forward and backward passes.
//
//   Trainer t{model, opt, loss, methods::SAM{{.rho = 0.05f, .interval = 5}}};
//
// Hook: before_step (the gradients are final there; the second pass runs through the
// context's GradientRecompute). It runs before GradientClipping and MagnitudePruning, so those
// act on the SAM gradient. The second pass is a training-mode forward: BatchNorm running
// statistics move twice on a SAM step (as in Composer).
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

class GradientClipping;
class MagnitudePruning;

struct SAMOptions {
  float rho = 0.05f;          ///< radius of the neighbourhood (the perturbation's norm)
  float epsilon = 1e-12f;     ///< added to the gradient norm
  std::int64_t interval = 1;  ///< a SAM step every `interval` steps
};

class SAM {
 public:
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::before_step>;
  using runs_before = type_list<GradientClipping, MagnitudePruning>;

  explicit SAM(SAMOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::SAM: ";
    require(opt_.rho > 0.f && std::isfinite(opt_.rho), who, "rho must be positive and finite, got ", opt_.rho);
    require(opt_.epsilon >= 0.f && std::isfinite(opt_.epsilon), who, "epsilon must be >= 0, got ", opt_.epsilon);
    require(opt_.interval >= 1, who, "interval must be >= 1, got ", opt_.interval);
  }
  static std::string name() { return "SAM"; }
  const SAMOptions& options() const { return opt_; }
  /// SAM steps taken in this run.
  std::int64_t sam_steps() const { return sam_steps_; }
  /// The loss at the perturbed weights on the last SAM step.
  float last_perturbed_loss() const { return last_loss_; }

  void reset() {
    sam_steps_ = 0;
    last_loss_ = 0.f;
  }

  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    if (ctx.time.batch % opt_.interval != 0) return;
    if (!ctx.recompute)
      throw std::logic_error("fasttrain::methods::SAM: the step context has no GradientRecompute");
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    double sq = 0.0;
    ctx.model.for_each_parameter([&](auto&, auto& g) { sq += static_cast<double>(B::squared_norm(g)); });
    const double norm = std::sqrt(sq);
    if (!(norm > 0.0) || !std::isfinite(norm)) return;  // nothing to climb (or left to the finite check)
    const float scale = static_cast<float>(opt_.rho / (norm + opt_.epsilon));
    auto& saved = saved_.on<B>();
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto& g) {
      if (i == saved.size()) saved.emplace_back();
      saved[i++] = p;
      ascend<B>(p, g, scale);
    });
    last_loss_ = (*ctx.recompute)();
    i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) { p.swap(saved[i++]); });  // w exactly as it was
    ++sam_steps_;
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("rho", opt_.rho);
    ar.config("epsilon", opt_.epsilon);
    ar.config("interval", opt_.interval);
    ar("sam_steps", sam_steps_);
  }

  /// p += scale g, element-wise on the backend (public for nvcc's device lambdas).
  template <class B, class M>
  static void ascend(M& p, const M& g, float scale) {
    B::apply([=] FASTTRAIN_HD(float& pi, const float& gi) { pi += scale * gi; }, p, g);
  }

 private:
  SAMOptions opt_;
  ParamBuffers saved_;  // the unperturbed weights during a SAM step, on the model's backend
  std::int64_t sam_steps_ = 0;
  float last_loss_ = 0.f;
};

}  // namespace fasttrain::methods
