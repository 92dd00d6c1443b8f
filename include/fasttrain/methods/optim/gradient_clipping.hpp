// fasttrain/methods/optim/gradient_clipping.hpp -- GradientClipping (optimization / restrict).
//
// Bounds the gradient before the optimizer step:
//   * by norm:  if the global L2 norm ||g|| over all parameters exceeds `threshold`,
//               every gradient is scaled by threshold / ||g|| (Pascanu et al. 2013);
//   * by value: every gradient element is clamped to [-threshold, threshold].
// It restricts the size of an update, which keeps training stable at high learning
// rates and through loss spikes.
//
//   methods::GradientClipping::by_norm(1.0f)
//   methods::GradientClipping::by_value(0.5f)
//
// Hook: before_step (gradients are final there).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>

#include "fasttrain/core/error.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

namespace detail {
// Named function templates, not lambdas inside for_each_parameter's generic lambda: nvcc
// compiles these kernels for the GPU only outside generic lambdas.
template <class B, class M>
void scale_in_place(M& g, float s) {
  B::apply([=] FASTTRAIN_HD(float& gi) { gi *= s; }, g);
}
template <class B, class M>
void clamp_in_place(M& g, float v) {  // NaN stays NaN (both comparisons are false), as std::clamp
  B::apply([=] FASTTRAIN_HD(float& gi) { gi = gi < -v ? -v : (gi > v ? v : gi); }, g);
}
}  // namespace detail

/// Plain function form: scales all gradients of `model` so their global L2 norm is at
/// most `max_norm`. Returns the norm before clipping.
template <class Model>
float clip_grad_norm(Model& model, float max_norm) {
  using B = typename Model::backend;
  double sq = 0.0;
  model.for_each_parameter([&](auto&, auto& g) { sq += B::squared_norm(g); });
  const auto norm = static_cast<float>(std::sqrt(sq));
  if (norm > max_norm) {
    const float scale = max_norm / norm;
    model.for_each_parameter([&](auto&, auto& g) { detail::scale_in_place<B>(g, scale); });
  }
  return norm;
}

/// Plain function form: clamps every gradient element of `model` to [-v, v].
template <class Model>
void clip_grad_value(Model& model, float v) {
  using B = typename Model::backend;
  model.for_each_parameter([&](auto&, auto& g) { detail::clamp_in_place<B>(g, v); });
}

class GradientClipping {
 public:
  enum class Type { norm, value };
  static constexpr taxonomy tag{component::optimization, action::restrict};
  using events = fasttrain::events<event::before_step>;

  GradientClipping(Type type, float threshold) : type_(type), threshold_(threshold) {
    fasttrain::detail::require(threshold > 0.f && std::isfinite(threshold),
                    "fasttrain::methods::GradientClipping: threshold must be positive and finite, got ", threshold);
  }
  static GradientClipping by_norm(float max_norm = 1.0f) { return {Type::norm, max_norm}; }
  static GradientClipping by_value(float max_value) { return {Type::value, max_value}; }

  static std::string name() { return "GradientClipping"; }
  Type type() const { return type_; }
  float threshold() const { return threshold_; }
  /// Global gradient norm seen at the last step (by-norm clipping only), before clipping.
  float last_norm() const { return last_norm_; }
  /// Steps on which clipping changed the gradient (by-norm clipping only).
  std::int64_t clipped_steps() const { return clipped_; }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("type", type_);
    ar.config("threshold", threshold_);
    ar("last_norm", last_norm_);
    ar("clipped_steps", clipped_);
  }

  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    if (type_ == Type::norm) {
      last_norm_ = clip_grad_norm(ctx.model, threshold_);
      clipped_ += last_norm_ > threshold_;
    } else {
      clip_grad_value(ctx.model, threshold_);
    }
  }

 private:
  Type type_;
  float threshold_;
  float last_norm_ = 0.f;
  std::int64_t clipped_ = 0;
};

}  // namespace fasttrain::methods
