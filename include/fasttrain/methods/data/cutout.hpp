// fasttrain/methods/data/cutout.hpp -- CutOut (data / replace).
//
// Masks random square patches of each training image with zeros (DeVries and Taylor 2017,
// "Improved Regularization of Convolutional Neural Networks with Cutout",
// arXiv:1708.04552). Each image gets `holes` squares of side `length` (a fraction of the
// shorter image side), each centred uniformly at random and clipped at the border. With
// normalised inputs, 0 is the data's mean. Targets are untouched, so it composes with any
// loss and with the target-mixing methods.
//
//   Trainer t{model, opt, loss, methods::CutOut{{.length = 0.5f}}};
//
// Hook: before_forward. Needs image samples {C, H, W} (a shape_error says so).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct CutOutOptions {
  int holes = 1;           ///< squares per image
  float length = 0.5f;     ///< side of a square, as a fraction of the shorter image side, in (0, 1]
  std::uint64_t seed = 0;  ///< of the method's own generator
};

class CutOut {
 public:
  static constexpr taxonomy tag{component::data, action::replace};
  using events = fasttrain::events<event::before_forward>;

  explicit CutOut(CutOutOptions o = {}) : opt_(o), rng_(o.seed) {
    fasttrain::detail::require(opt_.holes >= 1, "fasttrain::methods::CutOut: holes must be >= 1, got ", opt_.holes);
    fasttrain::detail::require(opt_.length > 0.f && opt_.length <= 1.f,
                               "fasttrain::methods::CutOut: length must be in (0, 1], got ", opt_.length);
  }
  static std::string name() { return "CutOut"; }
  const CutOutOptions& options() const { return opt_; }

  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    with_host_tensor<typename Ctx::backend>(ctx.batch.inputs, [&](cpu::eigen::tensor& in) {
      if (in.shape.rank != 3)
        throw shape_error("fasttrain::methods::CutOut: needs image samples {C, H, W}, got shape " + in.shape.str());
      const std::int64_t C = in.shape[0], H = in.shape[1], W = in.shape[2];
      const auto side = std::max<std::int64_t>(
          1, static_cast<std::int64_t>(std::lround(opt_.length * static_cast<float>(std::min(H, W)))));
      for (Eigen::Index j = 0; j < in.data.cols(); ++j) {
        float* img = in.data.col(j).data();
        for (int h = 0; h < opt_.holes; ++h) {
          const auto cy = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(H))),
                     cx = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(W)));
          const std::int64_t y0 = std::max<std::int64_t>(0, cy - side / 2), y1 = std::min(H, cy - side / 2 + side);
          const std::int64_t x0 = std::max<std::int64_t>(0, cx - side / 2), x1 = std::min(W, cx - side / 2 + side);
          for (std::int64_t y = y0; y < y1; ++y)
            std::fill(img + C * (x0 + W * y), img + C * (x1 + W * y), 0.f);
        }
      }
    });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("holes", opt_.holes);
    ar.config("length", opt_.length);
    ar("rng", rng_);
  }

 private:
  CutOutOptions opt_;
  Rng rng_;
};

}  // namespace fasttrain::methods
