// fasttrain/methods/data/rand_augment.hpp -- RandAugment (data / replace).
//
// Applies `num_ops` image operations to every training image, each drawn uniformly (with
// replacement) from a fixed list and all at one shared strength `magnitude` (Cubuk et al.
// 2020, "RandAugment: Practical automated data augmentation with a reduced search space",
// arXiv:1909.13719). Two numbers, N and M, replace a learnt augmentation policy.
//
// The operations (bits of RandAugmentOptions::ops), with m = magnitude / 30 and a random
// sign s = +-1 for the signed ones:
//   identity    the image unchanged
//   flip_x      mirror left-right
//   shift_x/y   move by s * round(m * side / 3) whole pixels, zero-filled
//   rotate      turn by s * 30 m degrees about the centre, bilinear, zero-filled
//   contrast    per channel, mean + (1 + 0.9 s m) (x - mean)
//   brightness  x + 0.9 s m
// Inputs are normalised (0 = the data's mean, 1 = its standard deviation), so 0 is the
// neutral fill and brightness is an offset in standard deviations. Targets are untouched.
//
//   Trainer t{model, opt, loss, methods::RandAugment{{.num_ops = 2, .magnitude = 9}}};
//
// Hook: before_forward. Needs image samples {C, H, W} (a shape_error says so). The random
// choices of a batch are drawn in sample order before the images are changed (on all
// threads), so a seed gives the same batches whatever the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numbers>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

/// The image operations of RandAugment, and their plain function forms. An image is C x H x W
/// floats stored channels-fastest: pixel (y, x), channel c at c + C * (x + W * y).
namespace augment {

/// Bits of RandAugmentOptions::ops; combine with |.
enum op : std::uint32_t {
  identity = 1u << 0,
  flip_x = 1u << 1,
  shift_x = 1u << 2,
  shift_y = 1u << 3,
  rotate = 1u << 4,
  contrast = 1u << 5,
  brightness = 1u << 6,
};
inline constexpr int op_count = 7;
inline constexpr std::uint32_t all_ops = (1u << op_count) - 1;

inline const char* op_name(op o) {
  switch (o) {
    case identity: return "identity";
    case flip_x: return "flip_x";
    case shift_x: return "shift_x";
    case shift_y: return "shift_y";
    case rotate: return "rotate";
    case contrast: return "contrast";
    case brightness: return "brightness";
  }
  return "?";
}

/// Mirrors the image left-right (column x goes to W - 1 - x).
inline void mirror(float* img, std::int64_t C, std::int64_t H, std::int64_t W) {
  for (std::int64_t y = 0; y < H; ++y)
    for (std::int64_t a = 0, b = W - 1; a < b; ++a, --b)
      std::swap_ranges(img + C * (a + W * y), img + C * (a + 1 + W * y), img + C * (b + W * y));
}

/// Moves the image by (dx, dy) whole pixels (positive: right, down); uncovered pixels become 0.
inline void translate(float* img, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t dx, std::int64_t dy) {
  const auto row = static_cast<std::size_t>(C * W);
  if (dy != 0) {
    const std::int64_t keep = std::max<std::int64_t>(0, H - std::abs(dy));
    if (dy > 0) {
      if (keep > 0) std::memmove(img + C * W * dy, img, static_cast<std::size_t>(keep) * row * sizeof(float));
      std::fill(img, img + C * W * (H - keep), 0.f);
    } else {
      if (keep > 0) std::memmove(img, img + C * W * (-dy), static_cast<std::size_t>(keep) * row * sizeof(float));
      std::fill(img + C * W * keep, img + C * W * H, 0.f);
    }
  }
  if (dx != 0) {
    const std::int64_t keep = std::max<std::int64_t>(0, W - std::abs(dx));
    for (std::int64_t y = 0; y < H; ++y) {
      float* r = img + C * W * y;
      if (dx > 0) {
        if (keep > 0) std::memmove(r + C * dx, r, static_cast<std::size_t>(C * keep) * sizeof(float));
        std::fill(r, r + C * (W - keep), 0.f);
      } else {
        if (keep > 0) std::memmove(r, r + C * (-dx), static_cast<std::size_t>(C * keep) * sizeof(float));
        std::fill(r + C * keep, r + C * W, 0.f);
      }
    }
  }
}

/// Turns `src` by `degrees` about the image centre ((W - 1) / 2, (H - 1) / 2) into `dst`
/// (positive: clockwise as displayed, y pointing down): each output pixel interpolates
/// bilinearly at its rotated position, and positions outside the image read 0.
inline void turn(const float* src, float* dst, std::int64_t C, std::int64_t H, std::int64_t W, double degrees) {
  const double a = degrees * std::numbers::pi / 180.0, cs = std::cos(a), sn = std::sin(a);
  const double cx = 0.5 * static_cast<double>(W - 1), cy = 0.5 * static_cast<double>(H - 1);
  for (std::int64_t y = 0; y < H; ++y)
    for (std::int64_t x = 0; x < W; ++x) {
      const double dx = static_cast<double>(x) - cx, dy = static_cast<double>(y) - cy;
      const double sx = cs * dx + sn * dy + cx, sy = -sn * dx + cs * dy + cy;
      const double fx0 = std::floor(sx), fy0 = std::floor(sy);
      const auto x0 = static_cast<std::int64_t>(fx0), y0 = static_cast<std::int64_t>(fy0);
      const float wx = static_cast<float>(sx - fx0), wy = static_cast<float>(sy - fy0);
      float* d = dst + C * (x + W * y);
      std::fill(d, d + C, 0.f);
      const float w[4] = {(1.f - wx) * (1.f - wy), wx * (1.f - wy), (1.f - wx) * wy, wx * wy};
      for (int t = 0; t < 4; ++t) {
        const std::int64_t px = x0 + (t & 1), py = y0 + (t >> 1);
        if (w[t] == 0.f || px < 0 || px >= W || py < 0 || py >= H) continue;
        const float* v = src + C * (px + W * py);
        for (std::int64_t c = 0; c < C; ++c) d[c] += w[t] * v[c];
      }
    }
}

/// Scales each channel's deviations from its mean by `factor` (the mean stays).
inline void scale_contrast(float* img, std::int64_t C, std::int64_t H, std::int64_t W, float factor) {
  const std::int64_t pixels = H * W;
  for (std::int64_t c = 0; c < C; ++c) {
    double sum = 0.0;
    for (std::int64_t p = 0; p < pixels; ++p) sum += img[c + C * p];
    const auto mean = static_cast<float>(sum / static_cast<double>(pixels));
    for (std::int64_t p = 0; p < pixels; ++p) img[c + C * p] = mean + factor * (img[c + C * p] - mean);
  }
}

/// Adds `offset` to every value.
inline void add_offset(float* img, std::int64_t size, float offset) {
  for (std::int64_t i = 0; i < size; ++i) img[i] += offset;
}

}  // namespace augment

struct RandAugmentOptions {
  int num_ops = 2;           ///< N: operations applied to each image, in [1, 16]
  float magnitude = 9.f;     ///< M: strength of every operation, in [0, 30] (30: shifts of a third of the side, 30 degrees)
  std::uint32_t ops = augment::all_ops;  ///< which operations to draw from: bits of augment::op
  std::uint64_t seed = 0;    ///< of the method's own generator
};

class RandAugment {
 public:
  static constexpr taxonomy tag{component::data, action::replace};
  using events = fasttrain::events<event::before_forward>;

  explicit RandAugment(RandAugmentOptions o = {}) : opt_(o), rng_(o.seed) {
    fasttrain::detail::require(opt_.num_ops >= 1 && opt_.num_ops <= 16,
                               "fasttrain::methods::RandAugment: num_ops must be in [1, 16], got ", opt_.num_ops);
    fasttrain::detail::require(opt_.magnitude >= 0.f && opt_.magnitude <= 30.f,
                               "fasttrain::methods::RandAugment: magnitude must be in [0, 30], got ", opt_.magnitude);
    fasttrain::detail::require(opt_.ops != 0 && (opt_.ops & ~augment::all_ops) == 0,
                               "fasttrain::methods::RandAugment: ops must be a non-empty set of augment::op bits (at "
                               "most ", augment::all_ops, "), got ", opt_.ops);
    for (int b = 0; b < augment::op_count; ++b)
      if (opt_.ops & (1u << b)) enabled_.push_back(static_cast<augment::op>(1u << b));
  }
  static std::string name() { return "RandAugment"; }
  const RandAugmentOptions& options() const { return opt_; }

  /// Pixels a shift moves by (before its sign) on an image side of `side` pixels.
  std::int64_t shift_pixels(std::int64_t side) const {
    return static_cast<std::int64_t>(std::lround(strength() * static_cast<double>(side) / 3.0));
  }
  /// Degrees a rotation turns by (before its sign).
  double rotation_degrees() const { return 30.0 * strength(); }
  /// The contrast factor is 1 + s * this, and the brightness offset s * this.
  float intensity() const { return static_cast<float>(0.9 * strength()); }

  /// Applies operation `o` with sign `sign` (+1 or -1) to one image of shape {C, H, W};
  /// `scratch` is resized to C * H * W when the operation needs it (rotate).
  void apply(augment::op o, int sign, float* img, std::int64_t C, std::int64_t H, std::int64_t W,
             std::vector<float>& scratch) const {
    switch (o) {
      case augment::identity: return;
      case augment::flip_x: augment::mirror(img, C, H, W); return;
      case augment::shift_x: augment::translate(img, C, H, W, sign * shift_pixels(W), 0); return;
      case augment::shift_y: augment::translate(img, C, H, W, 0, sign * shift_pixels(H)); return;
      case augment::rotate: {
        const double deg = sign * rotation_degrees();
        if (deg == 0.0) return;
        scratch.assign(img, img + C * H * W);
        augment::turn(scratch.data(), img, C, H, W, deg);
        return;
      }
      case augment::contrast:
        if (intensity() != 0.f) augment::scale_contrast(img, C, H, W, 1.f + static_cast<float>(sign) * intensity());
        return;
      case augment::brightness:
        if (intensity() != 0.f) augment::add_offset(img, C * H * W, static_cast<float>(sign) * intensity());
        return;
    }
  }

  /// The operations drawn for sample j of the last batch, and their signs.
  augment::op last_op(std::int64_t j, int k) const { return plan_[index(j, k)].o; }
  int last_sign(std::int64_t j, int k) const { return plan_[index(j, k)].sign; }

  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    with_host_tensor<typename Ctx::backend>(ctx.batch.inputs, [&](cpu::eigen::tensor& in) {
      if (in.shape.rank != 3)
        throw shape_error("fasttrain::methods::RandAugment: needs image samples {C, H, W}, got shape " + in.shape.str());
      const std::int64_t C = in.shape[0], H = in.shape[1], W = in.shape[2];
      using B = cpu::eigen;
      const B::index n = in.data.cols();
      // Every random choice first, in sample order ...
      plan_.resize(static_cast<std::size_t>(n * opt_.num_ops));
      for (auto& step : plan_) {
        step.o = enabled_[static_cast<std::size_t>(rng_.below(enabled_.size()))];
        step.sign = rng_.below(2) ? -1 : 1;
      }
      // ... then the images, independently.
      scratch_.resize(static_cast<std::size_t>(std::max(B::threads(), 1)));
      auto part = [&](int w, B::index first, B::index count) {
        for (auto j = first; j < first + count; ++j) {
          float* img = in.data.col(j).data();
          for (int k = 0; k < opt_.num_ops; ++k) {
            const auto& step = plan_[index(j, k)];
            apply(step.o, step.sign, img, C, H, W, scratch_[static_cast<std::size_t>(w)]);
          }
        }
      };
      if (n * C * H * W >= (std::int64_t{1} << 16)) B::parallel_parts(n, part);
      else if (n > 0) part(0, 0, n);
    });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("num_ops", opt_.num_ops);
    ar.config("magnitude", opt_.magnitude);
    ar.config("ops", opt_.ops);
    ar("rng", rng_);
  }

 private:
  struct step_t {
    augment::op o = augment::identity;
    int sign = 1;
  };
  double strength() const { return static_cast<double>(opt_.magnitude) / 30.0; }
  std::size_t index(std::int64_t j, int k) const { return static_cast<std::size_t>(j * opt_.num_ops + k); }

  RandAugmentOptions opt_;
  Rng rng_;
  std::vector<augment::op> enabled_;
  std::vector<step_t> plan_;
  std::vector<std::vector<float>> scratch_;
};

}  // namespace fasttrain::methods
