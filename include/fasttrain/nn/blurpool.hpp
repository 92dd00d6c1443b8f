// fasttrain/nn/blurpool.hpp -- anti-aliased downsampling: a fixed binomial low-pass
// filter, then subsampling (Zhang 2019, "Making Convolutional Networks Shift-Invariant
// Again", arXiv:1904.11486).
//
//   nn::BlurPool2d<2>    // blur and keep every second row and column: H x W -> ceil(H/2) x ceil(W/2)
//   nn::BlurPool2d<1>    // blur only (put it before a strided Conv2d or a pooling layer)
//
// Subsampling a feature map aliases: a one-pixel shift of the input changes which pixels
// survive. Low-pass filtering first removes the frequencies that would alias. The filter
// is the 3x3 binomial kernel, the same for every channel (depthwise) and not learned:
//
//   k = [1 2 1]^T [1 2 1] / 16,   y(c, oy, ox) = sum_{ky,kx} k(ky, kx) x(c, S oy - 1 + ky, S ox - 1 + kx)
//
// with zeros outside the image (padding 1), so the output is floor((H - 1) / S) + 1 rows
// by floor((W - 1) / S) + 1 columns and keeps the channels. The kernel is separable: the
// layer runs a vertical [1 2 1] / 4 pass over whole image rows (contiguous, C*W floats
// with channels fastest) and a horizontal one over the pixels of each row, into a buffer
// per thread allocated once. Backward applies the transpose: the same passes scattered
// back (with S = 1 the operator is symmetric, so backward is the forward filter of dy).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "fasttrain/nn/conv.hpp"
#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

template <std::int64_t Stride = 2, class B = default_backend>
class BasicBlurPool2d : public parameterless {
  static_assert(Stride > 0, "fasttrain::nn::BlurPool2d<Stride>: the stride must be positive (1 blurs, 2 blurs and halves)");

 public:
  using backend = B;
  using tensor = typename B::tensor;
  using index = typename B::index;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = dynamic;
  static constexpr std::int64_t stride = Stride;
  template <class B2>
  using rebind = BasicBlurPool2d<Stride, B2>;

  static std::string name() { return "BlurPool2d<" + std::to_string(Stride) + ">"; }
  Shape output_shape(const Shape& in) const {
    const auto g = detail::image_window<B>(name(), in, any, 3, Stride, 1);
    return Shape(g.C, g.Ho, g.Wo);
  }

  void forward(const tensor& x, tensor& y, Mode) {
    detail::check_batch<B>(name(), x);
    const auto g = detail::image_window<B>(name(), x.shape, any, 3, Stride, 1);
    y.resize(Shape(g.C, g.Ho, g.Wo), x.batch());
    if constexpr (std::is_same_v<B, cpu::eigen>) filter(x.data.data(), y.data.data(), g, x.batch());
    else filter_kernel(x.data.data(), y.data.data(), g, x.batch());
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!dx) return;
    const auto g = detail::image_window<B>(name(), x.shape, any, 3, Stride, 1);
    const auto n = x.batch();
    dx->resize(x.shape, n);
    if constexpr (!std::is_same_v<B, cpu::eigen>) {
      transpose_kernel(dy.data.data(), dx->data.data(), g, n);
    } else if constexpr (Stride == 1) {
      filter(dy.data.data(), dx->data.data(), g, n);  // symmetric: the transpose is the filter itself
    } else {
      const index C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, row = W * C;
      const index in_sample = C * H * W, out_sample = C * Ho * Wo;
      prepare(row + 2 * C, row);
      for_samples(n, in_sample, [&](int w, index s) {
        float* d = dx->data.data() + s * in_sample;
        const float* gs = dy.data.data() + s * out_sample;
        float* buf = rows_[static_cast<std::size_t>(w)].data();  // padded row: C zeros, W pixels, C zeros
        const float* mid = buf + C;
        std::fill(d, d + in_sample, 0.f);
        for (index oy = 0; oy < Ho; ++oy) {
          // Transpose of the horizontal pass: each output pixel feeds three input pixels.
          std::fill(buf, buf + row + 2 * C, 0.f);
          const float* go = gs + oy * Wo * C;
          for (index ox = 0; ox < Wo; ++ox) {
            float* p = buf + ox * Stride * C;
            const float* v = go + ox * C;
            for (index c = 0; c < C; ++c) {
              const float q = 0.25f * v[c];
              p[c] += q;
              p[c + C] += q + q;
              p[c + 2 * C] += q;
            }
          }
          // Transpose of the vertical pass: the row feeds input rows S oy - 1, S oy, S oy + 1.
          const index iy = oy * Stride - 1;
          if (iy >= 0) axpy(0.25f, mid, d + iy * row, row);
          axpy(0.5f, mid, d + (iy + 1) * row, row);
          if (iy + 2 < H) axpy(0.25f, mid, d + (iy + 2) * row, row);
        }
      });
    }
  }

  // The backends other than cpu::eigen (the GPU among them) run these index kernels instead of
  // the separable passes below: one call per output value for the filter, and one per input
  // value for its transpose (a gather, so no two calls write one place). (Public only because
  // nvcc refuses device lambdas in private member functions.)
  static FASTTRAIN_HD float tap(index k) { return k == 1 ? 0.5f : 0.25f; }
  void filter_kernel(const float* in, float* out, const typename B::window& g, index n) {
    const index C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, in_sample = C * H * W, out_sample = C * Ho * Wo;
    B::for_index(out_sample * n, [=] FASTTRAIN_HD(index k) {
      const index s = k / out_sample, r = k % out_sample, c = r % C, oy = r / C / Wo, ox = r / C % Wo;
      float acc = 0.f;
      for (index ky = 0; ky < 3; ++ky) {
        const index iy = oy * Stride - 1 + ky;
        if (iy < 0 || iy >= H) continue;
        for (index kx = 0; kx < 3; ++kx) {
          const index ix = ox * Stride - 1 + kx;
          if (ix >= 0 && ix < W) acc += tap(ky) * tap(kx) * in[s * in_sample + (iy * W + ix) * C + c];
        }
      }
      out[k] = acc;
    });
  }
  void transpose_kernel(const float* dy, float* dx, const typename B::window& g, index n) {
    const index C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, in_sample = C * H * W, out_sample = C * Ho * Wo;
    B::for_index(in_sample * n, [=] FASTTRAIN_HD(index k) {
      const index s = k / in_sample, r = k % in_sample, c = r % C, iy = r / C / W, ix = r / C % W;
      float acc = 0.f;
      for (index ky = 0; ky < 3; ++ky) {
        const index ty = iy + 1 - ky;  // = oy * Stride
        if (ty < 0 || ty % Stride != 0 || ty / Stride >= Ho) continue;
        for (index kx = 0; kx < 3; ++kx) {
          const index tx = ix + 1 - kx;
          if (tx < 0 || tx % Stride != 0 || tx / Stride >= Wo) continue;
          acc += tap(ky) * tap(kx) * dy[s * out_sample + ((ty / Stride) * Wo + tx / Stride) * C + c];
        }
      }
      dx[k] = acc;
    });
  }

 private:
  // out (batch of Ho x Wo) = the strided binomial filter of in (batch of H x W).
  void filter(const float* in, float* out, const typename B::window& g, index n) {
    const index C = g.C, H = g.H, W = g.W, Ho = g.Ho, Wo = g.Wo, row = W * C;
    const index in_sample = C * H * W, out_sample = C * Ho * Wo;
    prepare(row + 2 * C, row);
    const float* zero = zero_.data();
    for_samples(n, in_sample, [&](int w, index s) {
      const float* img = in + s * in_sample;
      float* o = out + s * out_sample;
      float* buf = rows_[static_cast<std::size_t>(w)].data();  // padded row: C zeros, W pixels, C zeros
      float* mid = buf + C;
      std::fill(buf, buf + C, 0.f);
      std::fill(buf + C + row, buf + 2 * C + row, 0.f);
      for (index oy = 0; oy < Ho; ++oy) {
        // Vertical [1 2 1] / 4 over input rows S oy - 1, S oy, S oy + 1 (S oy < H always).
        const index iy = oy * Stride - 1;
        const float* r0 = iy >= 0 ? img + iy * row : zero;
        const float* r1 = img + (iy + 1) * row;
        const float* r2 = iy + 2 < H ? img + (iy + 2) * row : zero;
        for (index j = 0; j < row; ++j) mid[j] = 0.25f * (r0[j] + r2[j]) + 0.5f * r1[j];
        // Horizontal [1 2 1] / 4 at every S-th pixel of the padded row.
        float* yo = o + oy * Wo * C;
        if constexpr (Stride == 1) {
          for (index j = 0; j < row; ++j) yo[j] = 0.25f * (buf[j] + buf[j + 2 * C]) + 0.5f * buf[j + C];
        } else {
          for (index ox = 0; ox < Wo; ++ox) {
            const float* p = buf + ox * Stride * C;
            float* v = yo + ox * C;
            for (index c = 0; c < C; ++c) v[c] = 0.25f * (p[c] + p[c + 2 * C]) + 0.5f * p[c + C];
          }
        }
      }
    });
  }

  static void axpy(float a, const float* x, float* y, index n) {
    for (index j = 0; j < n; ++j) y[j] += a * x[j];
  }

  // One padded row buffer per thread, and a row of zeros (the padding above and below).
  void prepare(index buffer, index row) {
    rows_.resize(static_cast<std::size_t>(std::max(B::threads(), 1)));
    for (auto& r : rows_)
      if (static_cast<index>(r.size()) < buffer) r.resize(static_cast<std::size_t>(buffer));
    if (static_cast<index>(zero_.size()) < row) zero_.assign(static_cast<std::size_t>(row), 0.f);
  }

  // f(worker, sample) for every sample; split over the threads when the batch is large
  // enough to pay for starting them.
  template <class F>
  static void for_samples(index n, std::int64_t sample_size, F&& f) {
    auto part = [&](int w, index first, index count) {
      for (auto s = first; s < first + count; ++s) f(w, s);
    };
    if (n * sample_size >= (std::int64_t{1} << 16)) B::parallel_parts(n, part);
    else part(0, 0, n);
  }

  std::vector<std::vector<float>> rows_;
  std::vector<float> zero_;
};
template <std::int64_t S = 2>
using BlurPool2d = BasicBlurPool2d<S>;

}  // namespace fasttrain::nn
