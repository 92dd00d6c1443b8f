// fasttrain/methods/optim/lamb.hpp -- LAMB (optimization / replace).
//
// Layer-wise Adaptive Moments for Batch training (You et al. 2019, "Large Batch Optimization
// for Deep Learning: Training BERT in 76 minutes", arXiv:1904.00962): Adam's update with
// decoupled weight decay, rescaled per parameter tensor by a trust ratio ||p|| / ||r|| so
// that each tensor moves by lr times its own norm. It replaces the optimizer, so large
// batches can be trained at high rates.
//
//   Trainer t{model, methods::LAMB{{.lr = 5e-3f, .weight_decay = 0.01f}}, loss};
//
// For each parameter p with gradient g at step t (base rate lr, schedule multiplier m):
//   m1 <- b1 m1 + (1 - b1) g,   m2 <- b2 m2 + (1 - b2) g^2
//   r  <- (m1 / (1 - b1^t)) / (sqrt(m2 / (1 - b2^t)) + eps) + weight_decay * p
//   trust <- ||p|| / ||r||      (1 when ||p|| or ||r|| is 0)
//   p  <- p - lr * m * trust * r
// The trust ratio is used as is (the paper's scaling function phi is the identity; some
// implementations clip it).
//
// One-column parameters (biases, BatchNorm scale and shift: C x 1) take plain Adam steps,
// trust = 1 and no weight decay, unless `adapt_vectors`: the usual practice in LAMB
// implementations. A Linear layer with a single input feature has a one-column weight too,
// and is treated as a vector.
//
// Not a hook-driven method: it is the optimizer (the Trainer's second argument). The tag
// files it in the taxonomy.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/optim/buffers.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct LAMBOptions {
  float lr = 1e-3f;            ///< base learning rate
  float beta1 = 0.9f;          ///< first-moment decay, in [0, 1)
  float beta2 = 0.999f;        ///< second-moment decay, in [0, 1)
  float eps = 1e-6f;           ///< added to sqrt of the second moment
  float weight_decay = 0.01f;  ///< decoupled: weight_decay * p is added to the update direction
  bool adapt_vectors = false;  ///< one-column parameters also get the trust ratio and decay
};

template <class B = default_backend>
class BasicLAMB {
 public:
  static constexpr taxonomy tag{component::optimization, action::replace};
  using backend = B;
  using matrix = typename B::matrix;
  using options_type = LAMBOptions;

  explicit BasicLAMB(LAMBOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::LAMB: ";
    require(o.lr > 0 && std::isfinite(o.lr), who, "lr must be positive and finite, got ", o.lr);
    require(o.beta1 >= 0 && o.beta1 < 1, who, "beta1 must be in [0, 1), got ", o.beta1);
    require(o.beta2 >= 0 && o.beta2 < 1, who, "beta2 must be in [0, 1), got ", o.beta2);
    require(o.eps > 0 && std::isfinite(o.eps), who, "eps must be positive and finite, got ", o.eps);
    require(o.weight_decay >= 0 && std::isfinite(o.weight_decay), who,
            "weight_decay must be >= 0 and finite, got ", o.weight_decay);
  }

  static std::string name() { return "LAMB"; }
  const LAMBOptions& options() const { return opt_; }
  float lr() const { return opt_.lr; }
  /// Steps taken (the t of the bias correction).
  std::int64_t steps() const { return t_; }

  /// One update of every parameter of `model` from its gradient.
  template <class Model>
  void step(Model& model, float multiplier = 1.f) {
    const std::int64_t t = t_ + 1;
    const float b1 = opt_.beta1, b2 = opt_.beta2, eps = opt_.eps;
    const float c1 = 1.f / (1.f - std::pow(b1, static_cast<float>(t)));
    const float c2 = 1.f / (1.f - std::pow(b2, static_cast<float>(t)));
    const float lr = opt_.lr * multiplier;
    const bool first = m1_.empty();
    std::size_t i = 0;
    model.for_each_parameter([&](matrix& p, matrix& g) {
      optim::detail::check_gradient(who, i, p, g);
      matrix& m = optim::detail::state_buffer(who, m1_, first, i, p);
      matrix& v = optim::detail::state_buffer(who, m2_, first, i, p);
      if (opt_.adapt_vectors || p.cols() != 1) {
        // Two passes: the direction r into a scratch buffer, then p -= lr * trust * r once
        // ||r|| is known (resize() reallocates only when the size changes).
        const float wd = opt_.weight_decay;
        r_.resize(p.rows(), p.cols());
        B::apply([=] FASTTRAIN_HD(const float& pi, const float& gi, float& mi, float& vi, float& ri) {
          mi = b1 * mi + (1.f - b1) * gi;
          vi = b2 * vi + (1.f - b2) * gi * gi;
          ri = (mi * c1) / (std::sqrt(vi * c2) + eps) + wd * pi;
        }, p, g, m, v, r_);
        const float pn = std::sqrt(B::squared_norm(p)), rn = std::sqrt(B::squared_norm(r_));
        const float rate = lr * (pn > 0.f && rn > 0.f ? pn / rn : 1.f);
        B::apply([=] FASTTRAIN_HD(float& pi, const float& ri) { pi -= rate * ri; }, p, r_);
      } else {
        B::apply([=] FASTTRAIN_HD(float& pi, const float& gi, float& mi, float& vi) {
          mi = b1 * mi + (1.f - b1) * gi;
          vi = b2 * vi + (1.f - b2) * gi * gi;
          pi -= lr * (mi * c1) / (std::sqrt(vi * c2) + eps);
        }, p, g, m, v);
      }
      ++i;
    });
    if (i != m1_.size()) throw optim::detail::state_mismatch(who, i);
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
    ar.config("adapt_vectors", opt_.adapt_vectors);
    ar("step", t_);
    ar("first_moments", m1_);
    ar("second_moments", m2_);
  }

  std::vector<matrix>& first_moments() { return m1_; }
  std::vector<matrix>& second_moments() { return m2_; }

 private:
  static constexpr const char* who = "fasttrain::methods::LAMB";

  LAMBOptions opt_;
  std::int64_t t_ = 0;
  std::vector<matrix> m1_, m2_;
  matrix r_;  // scratch: the update direction of the parameter being stepped
};
using LAMB = BasicLAMB<>;

}  // namespace fasttrain::methods
