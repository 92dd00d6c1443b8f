// fasttrain/methods/data/progressive_resizing.hpp -- ProgressiveResizing (data / restrict).
//
// Trains on smaller images first and grows them back to full size (fast.ai's progressive
// resizing, with the schedule of MosaicML Composer's ProgressiveResizing): the network's
// convolutions then run on fewer pixels early in training, where coarse features are learnt
// and the lost detail matters least. The survey files it under both restrict (lower
// resolution) and reorder (a curriculum from small to large images); its tag here is restrict.
//
// The side length as a function of f = Time::fraction(), the elapsed fraction of the budget:
//   ramp(f)  = 0                                    f < delay_fraction
//            = min(1, (f - delay_fraction) / (1 - finetune_fraction - delay_fraction))  otherwise
//   scale(f) = initial_scale + (1 - initial_scale) * ramp(f)
//   size     = round(full * scale(f) / size_increment) * size_increment   (round half to even)
// clamped to [size_increment, full] (to full when full < size_increment), for H and W each.
// With the defaults, a 28 x 28 image is trained at 16 x 16 for the first half of the budget,
// grows through 20 and 24 and is full size from 80% on. At full size the batch is not touched.
//
//   Trainer t{model, opt, loss, methods::ProgressiveResizing{{.initial_scale = 0.5}}};
//
// The model must accept every size on the way (global or adaptive pooling before its first
// Linear layer: nn::GlobalAvgPool, nn::AdaptiveAvgPool2d). Evaluation runs at full size.
//
// Hooks: before_forward (the batch's inputs become the smaller images), batch_end (the
// full-size batch is put back, so the data loader refills its own buffer without
// reallocating, and a batch that is trained on again starts from full size). Runs before
// the methods that change images or choose samples (MixUp, CutMix, CutOut, RandAugment,
// SelectiveBackprop), so that they work at the reduced size. Needs image samples {C, H, W}
// (a shape_error says so).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/methods/data/fwd.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/tensor/shape.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

/// How ProgressiveResizing makes an image smaller.
enum class ResizeMode {
  area,      ///< each output pixel is the mean of the input area it covers (box filter; no aliasing)
  bilinear,  ///< bilinear interpolation at the output pixel centres (half-pixel convention)
  crop,      ///< a random crop of the target size (independently for each image)
};

inline const char* resize_mode_name(ResizeMode m) {
  switch (m) {
    case ResizeMode::area: return "area";
    case ResizeMode::bilinear: return "bilinear";
    case ResizeMode::crop: return "crop";
  }
  return "?";
}

struct ProgressiveResizingOptions {
  double initial_scale = 0.5;      ///< side length at the start, as a fraction of full size, in (0, 1]
  double delay_fraction = 0.5;     ///< fraction of the budget trained at initial_scale, in [0, 1]
  double finetune_fraction = 0.2;  ///< fraction of the budget at the end trained at full size, in [0, 1]
  std::int64_t size_increment = 4;  ///< sides are multiples of this (>= 1)
  ResizeMode mode = ResizeMode::area;
  std::uint64_t seed = 0;  ///< of the method's own generator (crop offsets)
};

namespace detail {
/// One axis of a separable resampling: output i is sum_k weight[k] * input[index[k]] over
/// k in [offset[i], offset[i + 1]).
struct resample_axis {
  std::int64_t in = 0, out = 0;
  ResizeMode mode = ResizeMode::area;
  std::vector<std::int64_t> offset, index;
  std::vector<float> weight;

  void build(std::int64_t in_size, std::int64_t out_size, ResizeMode m) {
    if (in_size == in && out_size == out && m == mode && !offset.empty()) return;
    in = in_size, out = out_size, mode = m;
    offset.assign(1, 0);
    index.clear();
    weight.clear();
    const double step = static_cast<double>(in) / static_cast<double>(out);
    for (std::int64_t i = 0; i < out; ++i) {
      if (m == ResizeMode::bilinear) {
        const double src = std::max(0.0, (static_cast<double>(i) + 0.5) * step - 0.5);
        const auto i0 = std::min(static_cast<std::int64_t>(src), in - 1), i1 = std::min(i0 + 1, in - 1);
        const double w1 = i1 == i0 ? 0.0 : src - static_cast<double>(i0);
        add(i0, 1.0 - w1);
        if (w1 > 0.0) add(i1, w1);
      } else {  // area: the overlap of [i, i + 1) * step with each input pixel, over step
        const double lo = static_cast<double>(i) * step, hi = static_cast<double>(i + 1) * step;
        const auto k0 = static_cast<std::int64_t>(std::floor(lo));
        const auto k1 = std::min(in, static_cast<std::int64_t>(std::ceil(hi)));
        for (auto k = k0; k < k1; ++k) {
          const double w = (std::min(hi, static_cast<double>(k + 1)) - std::max(lo, static_cast<double>(k))) / step;
          if (w > 1e-9) add(k, w);
        }
      }
      offset.push_back(static_cast<std::int64_t>(index.size()));
    }
  }

 private:
  void add(std::int64_t k, double w) {
    index.push_back(k);
    weight.push_back(static_cast<float>(w));
  }
};
}  // namespace detail

class ProgressiveResizing {
 public:
  static constexpr taxonomy tag{component::data, action::restrict};
  using events = fasttrain::events<event::before_forward, event::batch_end>;
  using runs_before = type_list<MixUp, CutMix, CutOut, RandAugment, SelectiveBackprop>;

  explicit ProgressiveResizing(ProgressiveResizingOptions o = {}) : opt_(o), rng_(o.seed) {
    const char* who = "fasttrain::methods::ProgressiveResizing: ";
    fasttrain::detail::require(opt_.initial_scale > 0.0 && opt_.initial_scale <= 1.0, who,
                               "initial_scale must be in (0, 1], got ", opt_.initial_scale);
    fasttrain::detail::require(opt_.delay_fraction >= 0.0 && opt_.delay_fraction <= 1.0, who,
                               "delay_fraction must be in [0, 1], got ", opt_.delay_fraction);
    fasttrain::detail::require(opt_.finetune_fraction >= 0.0 && opt_.finetune_fraction <= 1.0, who,
                               "finetune_fraction must be in [0, 1], got ", opt_.finetune_fraction);
    fasttrain::detail::require(opt_.delay_fraction + opt_.finetune_fraction <= 1.0, who,
                               "delay_fraction + finetune_fraction must be <= 1, got ", opt_.delay_fraction, " + ",
                               opt_.finetune_fraction);
    fasttrain::detail::require(opt_.size_increment >= 1, who, "size_increment must be >= 1, got ",
                               opt_.size_increment);
    fasttrain::detail::require(
        opt_.mode == ResizeMode::area || opt_.mode == ResizeMode::bilinear || opt_.mode == ResizeMode::crop, who,
        "mode must be ResizeMode::area, bilinear or crop, got ", static_cast<int>(opt_.mode));
  }
  static std::string name() { return "ProgressiveResizing"; }
  const ProgressiveResizingOptions& options() const { return opt_; }

  /// The unrounded scale factor at elapsed fraction `fraction` of the budget.
  double scale_at(double fraction) const {
    double ramp = 0.0;
    if (fraction >= opt_.delay_fraction) {
      const double length = 1.0 - opt_.finetune_fraction - opt_.delay_fraction;
      ramp = length > 0.0 ? std::min((fraction - opt_.delay_fraction) / length, 1.0) : 1.0;
    }
    return opt_.initial_scale + (1.0 - opt_.initial_scale) * ramp;
  }
  /// The side length trained on at elapsed fraction `fraction` for a full side of `full`.
  std::int64_t size_at(double fraction, std::int64_t full) const {
    const double units = std::nearbyint(static_cast<double>(full) * scale_at(fraction) /
                                        static_cast<double>(opt_.size_increment));
    const auto size = static_cast<std::int64_t>(units) * opt_.size_increment;
    return std::clamp(size, std::min(opt_.size_increment, full), full);
  }
  /// The sample shape trained on at `fraction` for full-size samples `full` ({C, H, W}).
  Shape shape_at(double fraction, const Shape& full) const {
    check_image(full);
    return Shape(full[0], size_at(fraction, full[1]), size_at(fraction, full[2]));
  }
  /// The sample shape of the last batch before_forward saw (after resizing).
  const Shape& last_shape() const { return last_; }

  /// Resizes every sample of `in` ({C, H, W} each, one per column) to oh x ow into `out`
  /// with this method's mode (crop draws its offsets from the method's generator).
  void resize(const cpu::eigen::matrix& in, const Shape& shape, std::int64_t oh, std::int64_t ow,
              cpu::eigen::matrix& out) {
    check_image(shape);
    const std::int64_t C = shape[0], H = shape[1], W = shape[2];
    fasttrain::detail::require(oh >= 1 && oh <= H && ow >= 1 && ow <= W, "fasttrain::methods::ProgressiveResizing: ",
                               "cannot resize ", shape.str(), " to ", oh, "x", ow, " (only to a smaller size)");
    using B = cpu::eigen;
    const auto n = in.cols();
    out.resize(C * oh * ow, n);
    const auto in_sample = C * H * W, out_sample = C * oh * ow;
    if (opt_.mode == ResizeMode::crop) {
      offsets_.resize(static_cast<std::size_t>(2 * n));
      for (B::index j = 0; j < n; ++j) {
        offsets_[static_cast<std::size_t>(2 * j)] = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(H - oh + 1)));
        offsets_[static_cast<std::size_t>(2 * j + 1)] =
            static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(W - ow + 1)));
      }
      for_parts(n, in_sample, [&](int, B::index first, B::index count) {
        for (auto j = first; j < first + count; ++j) {
          const float* src = in.data() + j * in_sample;
          float* dst = out.data() + j * out_sample;
          const auto top = offsets_[static_cast<std::size_t>(2 * j)], left = offsets_[static_cast<std::size_t>(2 * j + 1)];
          for (std::int64_t y = 0; y < oh; ++y)
            std::memcpy(dst + C * ow * y, src + C * (left + W * (top + y)),
                        static_cast<std::size_t>(C * ow) * sizeof(float));
        }
      });
      return;
    }
    rows_.build(H, oh, opt_.mode);
    cols_.build(W, ow, opt_.mode);
    scratch_.resize(static_cast<std::size_t>(std::max(B::threads(), 1)));
    for_parts(n, in_sample, [&](int w, B::index first, B::index count) {
      auto& tmp = scratch_[static_cast<std::size_t>(w)];
      tmp.resize(static_cast<std::size_t>(H * ow * C));
      for (auto j = first; j < first + count; ++j) {
        const float* src = in.data() + j * in_sample;
        float* dst = out.data() + j * out_sample;
        // Along x: every input row to ow columns (tmp is H x ow x C) ...
        for (std::int64_t y = 0; y < H; ++y)
          for (std::int64_t ox = 0; ox < ow; ++ox) {
            float* t = tmp.data() + C * (ox + ow * y);
            std::fill(t, t + C, 0.f);
            for (auto k = cols_.offset[static_cast<std::size_t>(ox)]; k < cols_.offset[static_cast<std::size_t>(ox + 1)]; ++k) {
              const float wk = cols_.weight[static_cast<std::size_t>(k)];
              const float* v = src + C * (cols_.index[static_cast<std::size_t>(k)] + W * y);
              for (std::int64_t c = 0; c < C; ++c) t[c] += wk * v[c];
            }
          }
        // ... then along y: output row oy mixes whole rows of tmp.
        for (std::int64_t oy = 0; oy < oh; ++oy) {
          float* d = dst + C * ow * oy;
          std::fill(d, d + C * ow, 0.f);
          for (auto k = rows_.offset[static_cast<std::size_t>(oy)]; k < rows_.offset[static_cast<std::size_t>(oy + 1)]; ++k) {
            const float wk = rows_.weight[static_cast<std::size_t>(k)];
            const float* t = tmp.data() + C * ow * rows_.index[static_cast<std::size_t>(k)];
            for (std::int64_t i = 0; i < C * ow; ++i) d[i] += wk * t[i];
          }
        }
      }
    });
  }

  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    swapped_ = false;  // a step that threw before batch_end left nothing to restore
    auto& in = ctx.batch.inputs;
    if (in.shape.rank != 3)
      throw shape_error("fasttrain::methods::ProgressiveResizing: needs image samples {C, H, W}, got shape " +
                        in.shape.str());
    const Shape target = shape_at(ctx.time.fraction(), in.shape);
    last_ = target;
    if (target == in.shape) return;  // full size: the batch is not touched
    using B = typename Ctx::backend;
    auto& aside = set_aside<B>();
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      resize(in.data, in.shape, target[1], target[2], aside);
    } else {  // resampled on the host, the small batch copied to the backend
      cpu::eigen::matrix small;
      resize(host_copy<B>(in.data), in.shape, target[1], target[2], small);
      B::from_host(small.data(), small.rows(), small.cols(), aside);
    }
    // The resized batch goes in; the full-size storage waits aside until batch_end.
    in.data.swap(aside);
    full_shape_ = in.shape;
    in.shape = target;
    swapped_ = true;
  }
  template <class Ctx>
  void on_batch_end(Ctx& ctx) {
    if (!swapped_) return;
    auto& in = ctx.batch.inputs;
    in.data.swap(set_aside<typename Ctx::backend>());
    in.shape = full_shape_;
    swapped_ = false;
  }
  /// A new run (Trainer::fit) starts with nothing to restore.
  void reset() { swapped_ = false; }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("initial_scale", opt_.initial_scale);
    ar.config("delay_fraction", opt_.delay_fraction);
    ar.config("finetune_fraction", opt_.finetune_fraction);
    ar.config("size_increment", opt_.size_increment);
    ar.config("mode", opt_.mode);
    ar("rng", rng_);
  }

 private:
  static void check_image(const Shape& s) {
    if (s.rank != 3)
      throw shape_error("fasttrain::methods::ProgressiveResizing: needs image samples {C, H, W}, got shape " + s.str());
  }
  // f(worker, first, count) over the samples; on all threads when the batch is large enough
  // to pay for starting them.
  template <class F>
  static void for_parts(cpu::eigen::index n, std::int64_t sample_size, F&& f) {
    if (n * sample_size >= (std::int64_t{1} << 16)) cpu::eigen::parallel_parts(n, f);
    else if (n > 0) f(0, 0, n);
  }

  ProgressiveResizingOptions opt_;
  Rng rng_;
  Shape last_;
  Shape full_shape_;
  bool swapped_ = false;
  cpu::eigen::matrix small_;  // the matrix set aside on cpu::eigen
  ParamBuffers device_small_;  // the same on another backend
  template <class B>
  typename B::matrix& set_aside() {
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      return small_;
    } else {
      auto& v = device_small_.on<B>();
      if (v.empty()) v.emplace_back();
      return v.front();
    }
  }
  detail::resample_axis rows_, cols_;
  std::vector<std::vector<float>> scratch_;
  std::vector<std::int64_t> offsets_;
};

}  // namespace fasttrain::methods
