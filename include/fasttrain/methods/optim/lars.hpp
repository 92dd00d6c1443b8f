// fasttrain/methods/optim/lars.hpp -- LARS (optimization / replace).
//
// Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg 2017, "Large Batch Training of
// Convolutional Networks", arXiv:1708.03888): SGD with momentum whose step is scaled, per
// parameter tensor, by a local learning rate that keeps the update a fixed fraction of the
// weight's norm. It replaces the optimizer, so large batches can be trained at high rates.
//
//   Trainer t{model, methods::LARS{{.lr = 2.f, .weight_decay = 5e-4f}}, loss};
//
// For each parameter p with gradient g, base rate lr and schedule multiplier m:
//   local <- eta ||p|| / (||g|| + weight_decay ||p|| + eps)    (1 when ||p|| or ||g|| is 0)
//   v     <- momentum * v + lr * m * local * (g + weight_decay * p)
//   p     <- p - v
// The weight decay is coupled (an L2 term added to the gradient), as in the paper.
//
// One-column parameters (biases, BatchNorm scale and shift: C x 1) take plain SGD-momentum
// steps, local = 1 and no weight decay, unless `adapt_vectors`: the usual practice in LARS
// implementations, since the trust ratio of a bias is noisy and decaying it does not
// regularise. A Linear layer with a single input feature has a one-column weight too, and is
// treated as a vector.
//
// Not a hook-driven method: it is the optimizer (the Trainer's second argument). The tag
// files it in the taxonomy.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/optim/buffers.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct LARSOptions {
  float lr = 0.1f;                   ///< base (global) learning rate
  float momentum = 0.9f;             ///< in [0, 1)
  float weight_decay = 0.f;          ///< coupled L2 coefficient (added to the gradient)
  float trust_coefficient = 0.001f;  ///< eta: the local rate's fraction of ||p|| / ||g||
  float eps = 1e-8f;                 ///< added to the local rate's denominator
  bool adapt_vectors = false;        ///< one-column parameters also get the local rate and decay
};

template <class B = default_backend>
class BasicLARS {
 public:
  static constexpr taxonomy tag{component::optimization, action::replace};
  using backend = B;
  using matrix = typename B::matrix;
  using options_type = LARSOptions;

  explicit BasicLARS(LARSOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::LARS: ";
    require(o.lr > 0 && std::isfinite(o.lr), who, "lr must be positive and finite, got ", o.lr);
    require(o.momentum >= 0 && o.momentum < 1, who, "momentum must be in [0, 1), got ", o.momentum);
    require(o.weight_decay >= 0 && std::isfinite(o.weight_decay), who,
            "weight_decay must be >= 0 and finite, got ", o.weight_decay);
    require(o.trust_coefficient > 0 && std::isfinite(o.trust_coefficient), who,
            "trust_coefficient must be positive and finite, got ", o.trust_coefficient);
    require(o.eps >= 0 && std::isfinite(o.eps), who, "eps must be >= 0 and finite, got ", o.eps);
  }

  static std::string name() { return "LARS"; }
  const LARSOptions& options() const { return opt_; }
  float lr() const { return opt_.lr; }

  /// One update of every parameter of `model` from its gradient.
  template <class Model>
  void step(Model& model, float multiplier = 1.f) {
    const float lr = opt_.lr * multiplier, mu = opt_.momentum;
    const bool first = velocity_.empty();
    std::size_t i = 0;
    model.for_each_parameter([&](matrix& p, matrix& g) {
      optim::detail::check_gradient(who, i, p, g);
      const bool adapt = opt_.adapt_vectors || p.cols() != 1;
      const float wd = adapt ? opt_.weight_decay : 0.f;
      float local = 1.f;
      if (adapt) {
        const float pn = std::sqrt(B::squared_norm(p)), gn = std::sqrt(B::squared_norm(g));
        if (pn > 0.f && gn > 0.f) local = opt_.trust_coefficient * pn / (gn + wd * pn + opt_.eps);
      }
      const float rate = lr * local;
      if (mu > 0.f) {
        B::apply([=] FASTTRAIN_HD(float& pi, const float& gi, float& vi) {
          vi = mu * vi + rate * (gi + wd * pi);
          pi -= vi;
        }, p, g, optim::detail::state_buffer(who, velocity_, first, i, p));
      } else {
        B::apply([=] FASTTRAIN_HD(float& pi, const float& gi) { pi -= rate * (gi + wd * pi); }, p, g);
      }
      ++i;
    });
    if (mu > 0.f && i != velocity_.size()) throw optim::detail::state_mismatch(who, i);
  }

  /// Momentum buffers, in parameter order (empty before the first step, and without momentum).
  std::vector<matrix>& velocity() { return velocity_; }
  /// Saves or restores the hyperparameters (checked on restore) and the momentum buffers.
  template <class Archive>
  void state(Archive& ar) {
    ar.config("lr", opt_.lr);
    ar.config("momentum", opt_.momentum);
    ar.config("weight_decay", opt_.weight_decay);
    ar.config("trust_coefficient", opt_.trust_coefficient);
    ar.config("eps", opt_.eps);
    ar.config("adapt_vectors", opt_.adapt_vectors);
    ar("velocity", velocity_);
  }
  /// Forgets the momentum (the next step starts from zero velocity).
  void reset() { velocity_.clear(); }

 private:
  static constexpr const char* who = "fasttrain::methods::LARS";

  LARSOptions opt_;
  std::vector<matrix> velocity_;
};
using LARS = BasicLARS<>;

}  // namespace fasttrain::methods
