// fasttrain/optim/adamw.hpp -- Adam with decoupled weight decay (Loshchilov & Hutter 2019).
//
//   optim::AdamW opt{{.lr = 1e-3f, .weight_decay = 1e-4f}};
//
// For each parameter p with gradient g at step t (schedule multiplier m):
//   m1 <- b1 m1 + (1 - b1) g,   m2 <- b2 m2 + (1 - b2) g^2
//   p  <- p - lr m (m1 / (1 - b1^t)) / (sqrt(m2 / (1 - b2^t)) + eps) - m weight_decay p
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/optim/buffers.hpp"
#include "fasttrain/tensor/eigen.hpp"

namespace fasttrain::optim {

struct AdamWOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 1e-5f;  // per-step fraction; PyTorch's default 0.01 at its default lr 1e-3
};

template <class B = default_backend>
class BasicAdamW {
 public:
  using backend = B;
  using matrix = typename B::matrix;
  using options_type = AdamWOptions;

  explicit BasicAdamW(AdamWOptions o = {}) : opt_(o) {
    fasttrain::detail::require(o.lr > 0 && std::isfinite(o.lr), "fasttrain::optim::AdamW: lr must be positive and finite, got ",
                    o.lr);
    fasttrain::detail::require(o.beta1 >= 0 && o.beta1 < 1, "fasttrain::optim::AdamW: beta1 must be in [0, 1), got ", o.beta1);
    fasttrain::detail::require(o.beta2 >= 0 && o.beta2 < 1, "fasttrain::optim::AdamW: beta2 must be in [0, 1), got ", o.beta2);
    fasttrain::detail::require(o.eps > 0, "fasttrain::optim::AdamW: eps must be positive, got ", o.eps);
    fasttrain::detail::require(o.weight_decay >= 0 && o.weight_decay < 1,
                    "fasttrain::optim::AdamW: weight_decay must be in [0, 1), got ", o.weight_decay);
  }

  static std::string name() { return "AdamW"; }
  const AdamWOptions& options() const { return opt_; }
  float lr() const { return opt_.lr; }
  std::int64_t steps() const { return t_; }

  template <class Model>
  void step(Model& model, float multiplier = 1.f) {
    const std::int64_t t = t_ + 1;
    const float b1 = opt_.beta1, b2 = opt_.beta2, eps = opt_.eps;
    const float c1 = 1.f / (1.f - std::pow(b1, static_cast<float>(t)));
    const float c2 = 1.f / (1.f - std::pow(b2, static_cast<float>(t)));
    const float lr = opt_.lr * multiplier, decay = multiplier * opt_.weight_decay;
    const bool first = m1_.empty();
    std::size_t i = 0;
    model.for_each_parameter([&](matrix& p, matrix& g) {
      detail::check_gradient(who, i, p, g);
      matrix& m = detail::state_buffer(who, m1_, first, i, p);
      matrix& v = detail::state_buffer(who, m2_, first, i, p);
      B::apply([=] FASTTRAIN_HD(float& pi, const float& gi, float& mi, float& vi) {
        mi = b1 * mi + (1.f - b1) * gi;
        vi = b2 * vi + (1.f - b2) * gi * gi;
        pi -= lr * (mi * c1) / (std::sqrt(vi * c2) + eps) + decay * pi;
      }, p, g, m, v);
      ++i;
    });
    if (i != m1_.size()) throw detail::state_mismatch(who, i);
    t_ = t;
  }

  /// Forgets the moments and the step count.
  void reset() {
    m1_.clear();
    m2_.clear();
    t_ = 0;
  }

  /// Saves or restores the hyperparameters (checked on restore), the step count and moments.
  template <class Archive>
  void state(Archive& ar) {
    ar.config("lr", opt_.lr);
    ar.config("beta1", opt_.beta1);
    ar.config("beta2", opt_.beta2);
    ar.config("eps", opt_.eps);
    ar.config("weight_decay", opt_.weight_decay);
    ar("step", t_);
    ar("first_moments", m1_);
    ar("second_moments", m2_);
  }

  std::vector<matrix>& first_moments() { return m1_; }
  std::vector<matrix>& second_moments() { return m2_; }

 private:
  static constexpr const char* who = "fasttrain::optim::AdamW";

  AdamWOptions opt_;
  std::int64_t t_ = 0;
  std::vector<matrix> m1_, m2_;
};
using AdamW = BasicAdamW<>;

}  // namespace fasttrain::optim
