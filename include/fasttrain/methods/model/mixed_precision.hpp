// fasttrain/methods/model/mixed_precision.hpp -- MixedPrecision (model / restrict).
//
// Runs the matrix products of the forward and backward passes (every Linear and Conv2d
// GEMM) with their inputs rounded to 16 bits and the sums kept in fp32: on a GPU they run on
// the tensor cores (cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF / _16F). Weights, activations,
// gradients and optimizer state stay fp32 (the "master" copy is the only copy), so nothing
// else changes. Micikevicius et al. 2018, "Mixed Precision Training"; the survey's
// "restrict: low / mixed precision".
//
//   Trainer t{model, opt, loss, methods::MixedPrecision{}};                       // bf16
//   Trainer t{model, opt, loss, methods::MixedPrecision({.precision = Precision::fp16})};
//
// bf16 keeps fp32's exponent range and needs nothing more. fp16 has 5 exponent bits: small
// gradients underflow to zero, so it scales the loss (dynamic loss scaling): the output
// gradient is multiplied by `scale` before the backward pass and the parameter gradients
// divided by it before the step. A step whose gradients overflowed (NaN or infinity) is
// skipped, and the scale halved; after `growth_interval` good steps in a row it doubles.
//
// Backends: gpu::thrust (CUDA; and on Thrust's CPU systems, where the products round their
// inputs the same way, for tests). The CPU backends have no 16-bit products: the Trainer
// refuses the method there with a static_assert naming the supported backend.
//
// Hooks: fit_begin / fit_end (set and restore the backend's product precision),
// before_backward (scale the output gradient; fp16), before_step (unscale, skip; fp16).
// It runs before SAM, GradientClipping and MagnitudePruning, which read the gradients.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/methods/optim/gradient_clipping.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

class SAM;  // the ordering traits compare types: incomplete ones will do
class MagnitudePruning;

enum class Precision { bf16, fp16 };

struct MixedPrecisionOptions {
  Precision precision = Precision::bf16;
  /// fp16 only: the first loss scale, and the good steps after which it doubles.
  float initial_scale = 65536.f;
  std::int64_t growth_interval = 2000;
};

class MixedPrecision {
 public:
  static constexpr taxonomy tag{component::model, action::restrict};
  using events = fasttrain::events<event::fit_begin, event::fit_end, event::before_backward, event::before_step>;
  using runs_before = type_list<SAM, GradientClipping, MagnitudePruning>;

  explicit MixedPrecision(MixedPrecisionOptions o = {}) : o_(o), scale_(o.initial_scale) {
    fasttrain::detail::require(o.initial_scale >= 1.f && std::isfinite(o.initial_scale),
                               "fasttrain::methods::MixedPrecision: initial_scale must be >= 1 and finite, got ",
                               o.initial_scale);
    fasttrain::detail::require(o.growth_interval >= 1,
                               "fasttrain::methods::MixedPrecision: growth_interval must be >= 1 step, got ",
                               o.growth_interval);
  }
  static std::string name() { return "MixedPrecision"; }
  const MixedPrecisionOptions& options() const { return o_; }
  /// fp16: the current loss scale (1 with bf16).
  float scale() const { return o_.precision == Precision::fp16 ? scale_ : 1.f; }
  /// fp16: steps skipped because their gradients overflowed.
  std::int64_t skipped_steps() const { return skipped_; }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("precision", o_.precision);
    ar.config("initial_scale", o_.initial_scale);
    ar.config("growth_interval", o_.growth_interval);
    ar("scale", scale_);
    ar("good_steps", good_);
    ar("skipped_steps", skipped_);
  }

  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    static_assert(requires { B::set_gemm_precision(B::precision::bf16); },
                  "fasttrain::methods::MixedPrecision: runs on gpu::thrust only (16-bit GEMMs on the GPU's tensor "
                  "cores); cpu::eigen and cpu::xtensor have no reduced-precision products");
    previous_ = static_cast<int>(B::gemm_precision());
    B::set_gemm_precision(o_.precision == Precision::bf16 ? B::precision::bf16 : B::precision::fp16);
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    B::set_gemm_precision(static_cast<typename B::precision>(previous_));
  }

  template <class Ctx>
  void on_before_backward(Ctx& ctx) {
    if (o_.precision != Precision::fp16) return;
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    detail::scale_in_place<B>(ctx.grad_outputs.data, scale_);
  }

  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    if (o_.precision != Precision::fp16) return;
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    std::vector<typename B::const_view_type> grads;
    ctx.model.for_each_parameter([&](auto&, auto& g) {
      grads.push_back(B::view(static_cast<const float*>(g.data()), g.rows(), g.cols()));
    });
    if (B::first_nonfinite(grads) >= 0) {  // overflow: no step, a smaller scale
      ctx.skip_step = true;
      scale_ = scale_ / 2.f < 1.f ? 1.f : scale_ / 2.f;
      good_ = 0;
      ++skipped_;
      return;
    }
    const float inv = 1.f / scale_;
    ctx.model.for_each_parameter([&](auto&, auto& g) { detail::scale_in_place<B>(g, inv); });
    if (++good_ >= o_.growth_interval) {
      scale_ = scale_ * 2.f > 16777216.f ? 16777216.f : scale_ * 2.f;  // at most 2^24
      good_ = 0;
    }
  }

 private:
  MixedPrecisionOptions o_;
  float scale_;
  std::int64_t good_ = 0, skipped_ = 0;
  int previous_ = 0;
};

}  // namespace fasttrain::methods
