// fasttrain/optim/sgd.hpp -- SGD with momentum, Nesterov and decoupled weight decay.
//
//   optim::SGD opt{{.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-4f}};
//   opt.step(model, schedule_multiplier);
//
// Update (PyTorch's formulation of momentum, SGDW's decoupled decay), for each
// parameter p with gradient g, base rate lr and schedule multiplier m:
//   v <- momentum * v + g
//   d <- nesterov ? g + momentum * v : v        (d = g without momentum)
//   p <- p - lr * m * d - m * weight_decay * p
// The decay is decoupled from the gradient (Loshchilov & Hutter 2019) and follows the
// schedule, but not the base rate: weight_decay is a fraction of p per step.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/optim/buffers.hpp"
#include "fasttrain/tensor/eigen.hpp"

namespace fasttrain::optim {

struct SGDOptions {
  float lr = 0.1f;
  float momentum = 0.f;
  bool nesterov = false;
  float weight_decay = 0.f;
};

template <class B = default_backend>
class BasicSGD {
 public:
  using backend = B;
  using matrix = typename B::matrix;
  using options_type = SGDOptions;

  explicit BasicSGD(SGDOptions o = {}) : opt_(o) {
    fasttrain::detail::require(o.lr > 0 && std::isfinite(o.lr), "fasttrain::optim::SGD: lr must be positive and finite, got ",
                    o.lr);
    fasttrain::detail::require(o.momentum >= 0 && o.momentum < 1, "fasttrain::optim::SGD: momentum must be in [0, 1), got ",
                    o.momentum);
    fasttrain::detail::require(!o.nesterov || o.momentum > 0, "fasttrain::optim::SGD: nesterov needs momentum > 0");
    fasttrain::detail::require(o.weight_decay >= 0 && o.weight_decay < 1,
                    "fasttrain::optim::SGD: weight_decay must be in [0, 1), got ", o.weight_decay);
  }

  static std::string name() { return "SGD"; }
  const SGDOptions& options() const { return opt_; }
  float lr() const { return opt_.lr; }

  /// One update of every parameter of `model` from its gradient.
  template <class Model>
  void step(Model& model, float multiplier = 1.f) {
    const float lr = opt_.lr * multiplier, mu = opt_.momentum, decay = multiplier * opt_.weight_decay;
    const bool first = velocity_.empty();
    std::size_t i = 0;
    model.for_each_parameter([&](matrix& p, matrix& g) {
      detail::check_gradient(who, i, p, g);
      if (mu > 0.f) {
        matrix& v = detail::state_buffer(who, velocity_, first, i, p);
        if (opt_.nesterov)
          B::apply([=] FASTTRAIN_HD(float& pi, const float& gi, float& vi) {
            vi = mu * vi + gi;
            pi -= lr * (gi + mu * vi) + decay * pi;
          }, p, g, v);
        else
          B::apply([=] FASTTRAIN_HD(float& pi, const float& gi, float& vi) {
            vi = mu * vi + gi;
            pi -= lr * vi + decay * pi;
          }, p, g, v);
      } else {
        B::apply([=] FASTTRAIN_HD(float& pi, const float& gi) { pi -= lr * gi + decay * pi; }, p, g);
      }
      ++i;
    });
    if (mu > 0.f && i != velocity_.size()) throw detail::state_mismatch(who, i);
  }

  /// Momentum buffers, in parameter order (empty before the first step).
  std::vector<matrix>& velocity() { return velocity_; }
  /// Saves or restores the hyperparameters (checked on restore) and the momentum buffers.
  template <class Archive>
  void state(Archive& ar) {
    ar.config("lr", opt_.lr);
    ar.config("momentum", opt_.momentum);
    ar.config("nesterov", opt_.nesterov);
    ar.config("weight_decay", opt_.weight_decay);
    ar("velocity", velocity_);
  }
  /// Forgets the momentum (the next step starts from zero velocity).
  void reset() { velocity_.clear(); }

 private:
  static constexpr const char* who = "fasttrain::optim::SGD";
  SGDOptions opt_;
  std::vector<matrix> velocity_;
};
using SGD = BasicSGD<>;

}  // namespace fasttrain::optim
