// fasttrain/methods/data/cutmix.hpp -- CutMix (data / replace).
//
// Pastes a random box of another sample of the batch into each image, and mixes the targets
// in proportion to the area (Yun et al. 2019, "CutMix: Regularization Strategy to Train
// Strong Classifiers with Localizable Features", arXiv:1905.04899): per batch,
// lambda ~ Beta(alpha, alpha), a random pairing `perm`, and one box of area (1 - lambda) of
// the image, centred uniformly and clipped at the border; every image j gets the box from
// image perm[j] (all channels); then lambda is recomputed from the clipped box's area and
//   t_j <- lambda onehot(y_j) + (1 - lambda) onehot(y_perm[j]).
// Dense targets: works with any loss. Needs image samples {C, H, W} (a shape_error says so).
//
//   Trainer t{model, opt, loss, methods::CutMix{{.alpha = 1.0f}}};
//
// Hooks: before_forward, before_loss, after_loss. Runs before LabelSmoothing. Conflicts with
// MixUp (see mixup.hpp).
#pragma once

#include <algorithm>
#include <cmath>

#include "fasttrain/methods/data/mixup.hpp"

namespace fasttrain::methods {

struct CutMixOptions {
  float alpha = 1.0f;      ///< lambda ~ Beta(alpha, alpha); 1: uniform box areas
  std::uint64_t seed = 0;  ///< of the method's own generator
};

/// A box [y0, y1) x [x0, x1) of an image.
struct Box {
  std::int64_t y0 = 0, y1 = 0, x0 = 0, x1 = 0;
  std::int64_t area() const { return (y1 - y0) * (x1 - x0); }
};

class CutMix : public detail::pair_mixer {
 public:
  static constexpr taxonomy tag{component::data, action::replace};
  using events = fasttrain::events<event::before_forward, event::before_loss, event::after_loss>;
  using runs_before = type_list<LabelSmoothing>;
  using conflicts_with = type_list<MixUp>;

  explicit CutMix(CutMixOptions o = {}) : pair_mixer(o.seed), opt_(o) {
    fasttrain::detail::require(opt_.alpha > 0.f && std::isfinite(opt_.alpha),
                               "fasttrain::methods::CutMix: alpha must be positive and finite, got ", opt_.alpha);
  }
  static std::string name() { return "CutMix"; }
  const CutMixOptions& options() const { return opt_; }
  /// The box pasted at the last step.
  const Box& last_box() const { return box_; }

  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    with_host_tensor<typename Ctx::backend>(ctx.batch.inputs, [&](cpu::eigen::tensor& in) {
      if (in.shape.rank != 3)
        throw shape_error("fasttrain::methods::CutMix: needs image samples {C, H, W}, got shape " + in.shape.str());
      const std::int64_t C = in.shape[0], H = in.shape[1], W = in.shape[2];
      const auto n = in.data.cols();
      const double lam = rng_.beta(opt_.alpha, opt_.alpha);
      draw_pairing(n);
      const double cut = std::sqrt(1.0 - lam);
      const auto ch = static_cast<std::int64_t>(cut * static_cast<double>(H)),
                 cw = static_cast<std::int64_t>(cut * static_cast<double>(W));
      const auto cy = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(H))),
                 cx = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(W)));
      box_ = {std::clamp(cy - ch / 2, std::int64_t{0}, H), std::clamp(cy + ch - ch / 2, std::int64_t{0}, H),
              std::clamp(cx - cw / 2, std::int64_t{0}, W), std::clamp(cx + cw - cw / 2, std::int64_t{0}, W)};
      lambda_ = 1.f - static_cast<float>(box_.area()) / static_cast<float>(H * W);
      if (box_.area() == 0) return;
      inputs_ = in.data;
      const std::int64_t row = (box_.x1 - box_.x0) * C;  // one box row: contiguous (channels fastest)
      for (Eigen::Index j = 0; j < n; ++j) {
        const float* src = inputs_.col(perm_[static_cast<std::size_t>(j)]).data();
        float* dst = in.data.col(j).data();
        for (std::int64_t y = box_.y0; y < box_.y1; ++y) {
          const std::int64_t at = C * (box_.x0 + W * y);
          std::copy(src + at, src + at + row, dst + at);
        }
      }
    });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("alpha", opt_.alpha);
    ar("rng", rng_);
  }

 private:
  CutMixOptions opt_;
  Box box_;
};

}  // namespace fasttrain::methods
