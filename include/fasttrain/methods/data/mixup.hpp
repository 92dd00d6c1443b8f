// fasttrain/methods/data/mixup.hpp -- MixUp (data / replace).
//
// Trains on convex combinations of pairs of samples and of their targets (Zhang et al.
// 2018, "mixup: Beyond Empirical Risk Minimization", arXiv:1710.09412): per batch,
// lambda ~ Beta(alpha, alpha) and a random pairing `perm` of the batch;
//   x_j <- lambda x_j + (1 - lambda) x_perm[j]
//   t_j <- lambda onehot(y_j) + (1 - lambda) onehot(y_perm[j])
// The mixed targets are dense (nn::Targets::soft), so MixUp works with any loss that takes
// dense targets (every fasttrain loss does), not only cross-entropy.
//
//   Trainer t{model, opt, nn::SoftmaxCrossEntropy{}, methods::MixUp{{.alpha = 0.2f}}};
//
// Hooks: before_forward (mix the inputs), before_loss (install the mixed targets),
// after_loss (restore the previous targets). Runs before LabelSmoothing, which then smooths
// the mixed targets. Conflicts with CutMix (both replace the pairing of targets; stacking them
// would silently mix four samples).
#pragma once

#include <cstdint>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/methods/optim/label_smoothing.hpp"
#include "fasttrain/nn/loss.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

namespace detail {
/// Dense targets lambda * onehot(y) + (1 - lambda) * onehot(y[perm]), or the same mix of
/// `soft`'s columns when the targets are already dense.
template <class B>
void mix_targets(const nn::Targets<B>& in, const std::vector<std::int64_t>& perm, float lambda,
                 std::int64_t num_classes, typename B::matrix& out) {
  const auto n = static_cast<typename B::index>(perm.size());
  if (in.soft) {
    out.resize(in.soft->rows(), n);
    for (typename B::index j = 0; j < n; ++j)
      out.col(j) = lambda * in.soft->col(j) + (1.f - lambda) * in.soft->col(perm[static_cast<std::size_t>(j)]);
    return;
  }
  const auto& y = *in.labels;
  if (const auto j = B::first_bad_label(y, num_classes); j >= 0)
    throw shape_error(fasttrain::detail::cat("fasttrain::methods: label ", y[static_cast<std::size_t>(j)], " of sample ", j,
                                             " is out of range [0, ", num_classes, ")"));
  out.setZero(num_classes, n);
  for (typename B::index j = 0; j < n; ++j) {
    out(y[static_cast<std::size_t>(j)], j) += lambda;
    out(y[static_cast<std::size_t>(perm[static_cast<std::size_t>(j)])], j) += 1.f - lambda;
  }
}

/// What MixUp and CutMix share: the mixing state of one step, and the before_loss /
/// after_loss hooks that install the mixed dense targets and restore the previous ones.
class pair_mixer {
 public:
  explicit pair_mixer(std::uint64_t seed) : rng_(seed) {}
  float last_lambda() const { return lambda_; }
  const std::vector<std::int64_t>& last_permutation() const { return perm_; }

  template <class Ctx>
  void on_before_loss(Ctx& ctx) {
    using B = typename Ctx::backend;
    if (static_cast<std::int64_t>(perm_.size()) != ctx.outputs.batch())
      throw std::logic_error("fasttrain::methods: mixed targets without mixed inputs (before_forward did not run?)");
    saved_ = ctx.targets.soft;
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      mix_targets<B>(ctx.targets, perm_, lambda_, ctx.outputs.sample_size(), targets_);
      ctx.targets.soft = &targets_;
    } else {  // mixed on the host (classes x batch floats), then copied to the backend
      cpu::eigen::matrix soft;
      nn::Targets<cpu::eigen> host{ctx.targets.labels, nullptr};
      if (ctx.targets.soft) {
        soft = host_copy<B>(*ctx.targets.soft);
        host.soft = &soft;
      }
      mix_targets<cpu::eigen>(host, perm_, lambda_, ctx.outputs.sample_size(), targets_);
      auto& dev = device_targets_.on<B>();
      if (dev.empty()) dev.emplace_back();
      B::from_host(targets_.data(), targets_.rows(), targets_.cols(), dev.front());
      ctx.targets.soft = &dev.front();
    }
  }
  template <class Ctx>
  void on_after_loss(Ctx& ctx) {
    ctx.targets.soft = static_cast<decltype(ctx.targets.soft)>(saved_);
  }

 protected:
  void draw_pairing(std::int64_t n) {
    perm_.resize(static_cast<std::size_t>(n));
    std::iota(perm_.begin(), perm_.end(), std::int64_t{0});
    rng_.shuffle(perm_.begin(), perm_.end());
  }
  Rng rng_;
  float lambda_ = 1.f;
  std::vector<std::int64_t> perm_;
  cpu::eigen::matrix targets_, inputs_;
  ParamBuffers device_targets_;  // the mixed targets on a backend other than cpu::eigen
  const void* saved_ = nullptr;
};
}  // namespace detail

struct MixUpOptions {
  float alpha = 0.2f;       ///< lambda ~ Beta(alpha, alpha); small alpha: lambda near 0 or 1
  std::uint64_t seed = 0;   ///< of the method's own generator
};

class MixUp : public detail::pair_mixer {
 public:
  static constexpr taxonomy tag{component::data, action::replace};
  using events = fasttrain::events<event::before_forward, event::before_loss, event::after_loss>;
  using runs_before = type_list<LabelSmoothing>;

  explicit MixUp(MixUpOptions o = {}) : pair_mixer(o.seed), opt_(o) {
    fasttrain::detail::require(opt_.alpha > 0.f && std::isfinite(opt_.alpha),
                               "fasttrain::methods::MixUp: alpha must be positive and finite, got ", opt_.alpha);
  }
  static std::string name() { return "MixUp"; }
  const MixUpOptions& options() const { return opt_; }

  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    with_host_tensor<typename Ctx::backend>(ctx.batch.inputs, [&](cpu::eigen::tensor& in) {
      auto& X = in.data;
      const auto n = X.cols();
      lambda_ = static_cast<float>(rng_.beta(opt_.alpha, opt_.alpha));
      draw_pairing(n);
      inputs_ = X;
      for (Eigen::Index j = 0; j < n; ++j)
        X.col(j) = lambda_ * inputs_.col(j) + (1.f - lambda_) * inputs_.col(perm_[static_cast<std::size_t>(j)]);
    });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("alpha", opt_.alpha);
    ar("rng", rng_);
  }

 private:
  MixUpOptions opt_;
};

}  // namespace fasttrain::methods
