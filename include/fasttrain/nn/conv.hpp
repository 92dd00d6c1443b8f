// fasttrain/nn/conv.hpp -- convolution and pooling on images.
//
//   nn::Conv2d<1, 32, 5, 1, 2>   // 1 -> 32 channels, 5x5 kernel, stride 1, zero padding 2
//   nn::MaxPool2d<2>             // 2x2 windows, stride 2
//   nn::AvgPool2d<2>, nn::GlobalAvgPool
//   nn::AdaptiveAvgPool2d<7, 7>  // any H x W -> 7 x 7 (mean over input bins)
//
// Channel counts are template arguments (checked between layers at compile time); the
// image size is not, so the input resolution may change during training. Samples are
// {C, H, W} stored channels-fastest (see tensor/shape.hpp).
//
// Conv2d is im2col + one GEMM per chunk of samples: on the CPU the patch matrix of a chunk
// (K*K*C x Ho*Wo*samples) is small enough to stay in cache, on a GPU a chunk is a whole
// batch or a large part of one (B::conv_chunk_bytes); the GEMM's output is already the next
// layer's NHWC input. Backward recomputes the patches of each chunk
// instead of keeping the patch matrix of the whole batch (tens of MB) in memory.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "fasttrain/nn/init.hpp"
#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

namespace detail {
/// The window geometry for an image input, or a shape_error naming the layer.
template <class B>
typename B::window image_window(const std::string& who, const Shape& s, std::int64_t channels, std::int64_t k,
                                std::int64_t stride, std::int64_t pad) {
  if (s.rank != 3)
    throw shape_error(who + ": expects image samples {C, H, W}, got shape " + s.str());
  if (channels != any && s[0] != channels)
    throw shape_error(who + ": expects " + std::to_string(channels) + " input channels, got shape " + s.str());
  const std::int64_t ho = (s[1] + 2 * pad - k) / stride + 1, wo = (s[2] + 2 * pad - k) / stride + 1;
  if (s[1] + 2 * pad < k || s[2] + 2 * pad < k || ho < 1 || wo < 1)
    throw shape_error(who + ": a " + std::to_string(k) + "x" + std::to_string(k) + " window does not fit in an image of shape " +
                      s.str());
  return {s[0], s[1], s[2], k, stride, pad, ho, wo};
}
template <class B>
void check_batch(const std::string& who, const typename B::tensor& x) {
  if (x.sample_size() != x.shape.size())
    throw shape_error(who + ": batch has " + std::to_string(x.sample_size()) + " values per sample but shape " +
                      x.shape.str() + " has " + std::to_string(x.shape.size()));
}
}  // namespace detail

/// How Conv2d spreads a batch over threads: the batch split into one part per thread
/// (samples), each GEMM on all threads (gemm), or chosen by the patch size (automatic,
/// the default; see Conv2d::thin_patch).
enum class ConvParallel { automatic, samples, gemm };

template <std::int64_t InC, std::int64_t OutC, std::int64_t K, std::int64_t Stride = 1, std::int64_t Pad = 0,
          class B = default_backend>
class Conv2d : public weight_and_bias<Conv2d<InC, OutC, K, Stride, Pad, B>> {
  static_assert(InC > 0 && OutC > 0, "fasttrain::nn::Conv2d: channel counts must be positive");
  static_assert(K > 0 && Stride > 0 && Pad >= 0, "fasttrain::nn::Conv2d: need K > 0, Stride > 0, Pad >= 0");

 public:
  using backend = B;
  using matrix = typename B::matrix;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = dynamic;
  static constexpr std::int64_t in_channels = InC;
  static constexpr std::int64_t out_channels = OutC;
  static constexpr bool has_parameters = true;
  template <class B2>
  using rebind = Conv2d<InC, OutC, K, Stride, Pad, B2>;

  /// Default bytes of patch matrix per chunk of samples: the backend's (4 MiB on the CPU,
  /// measured with bench_layers, see docs/design.md; 256 MiB on a GPU).
  static constexpr std::int64_t default_chunk_bytes = B::conv_chunk_bytes;
  /// Sets the patch-matrix budget per chunk (>= 1 byte; one sample per chunk at least).
  void set_chunk_bytes(std::int64_t bytes) {
    fasttrain::detail::require(bytes >= 1, "fasttrain::nn::Conv2d: chunk bytes must be >= 1, got ", bytes);
    chunk_bytes_ = bytes;
  }

  /// With more than one thread, a layer whose patch has at most this many rows (K*K*InC)
  /// splits the batch into one part per thread, each running its own im2col and
  /// single-threaded GEMMs; wider layers run each GEMM on all threads. Measured on 2 cores
  /// (bench_layers, docs/design.md): conv 1->32 (25 rows) is about 10% faster split by
  /// samples, and stays fast when another process takes a core, where its short multi-
  /// threaded GEMMs slowed down 2x; conv 32->64 (800 rows) is about 4% faster GEMM-parallel.
  static constexpr std::int64_t thin_patch = 64;
  /// Overrides the choice above (for measurement).
  void set_parallelism(ConvParallel p) { parallel_ = p; }

  explicit Conv2d(Init init = Init::he_uniform) : init_(init) {
    weight.setZero(OutC, K * K * InC);
    bias.setZero(OutC, 1);
    weight_grad.setZero(OutC, K * K * InC);
    bias_grad.setZero(OutC, 1);
  }

  static std::string name() {
    return "Conv2d<" + std::to_string(InC) + "," + std::to_string(OutC) + "," + std::to_string(K) + "," +
           std::to_string(Stride) + "," + std::to_string(Pad) + ">";
  }
  Shape output_shape(const Shape& in) const {
    const auto g = detail::image_window<B>(name(), in, InC, K, Stride, Pad);
    return Shape(OutC, g.Ho, g.Wo);
  }
  /// Multiply-adds per sample for an input of shape `in` (forward pass).
  std::int64_t macs(const Shape& in) const {
    const auto g = detail::image_window<B>(name(), in, InC, K, Stride, Pad);
    return OutC * g.patch() * g.out_pixels();
  }

  void forward(const tensor& x, tensor& y, Mode mode) {
    detail::check_batch<B>(name(), x);
    const auto g = detail::image_window<B>(name(), x.shape, InC, K, Stride, Pad);
    const auto n = x.batch();
    y.resize(Shape(OutC, g.Ho, g.Wo), n);
    const auto step = g.out_pixels() * OutC;
    auto chunk_forward = [&](typename B::index first, typename B::index count, matrix& cols) {
      B::template im2col<InC, K>(x.data, first, count, g, cols);
      auto out = B::view(y.data.data() + first * step, OutC, g.out_pixels() * count);
      B::gemm(false, false, 1.f, weight, cols, 0.f, out);
      B::add_bias(out, bias);
    };
    if (by_samples()) {
      worker_cols_.resize(B::threads());
      B::parallel_parts(n, [&](int w, auto first, auto count) {
        for_chunks(g, first, count, [&](auto f, auto c) { chunk_forward(f, c, worker_cols_[w]); });
      });
    } else {
      for_chunks(g, 0, n, [&](auto f, auto c) { chunk_forward(f, c, cols_); });
    }
    // A batch that fit in one chunk leaves its whole patch matrix in cols_: the backward pass
    // of the same input reuses it instead of copying the patches again.
    cols_of_ = mode == Mode::train && !by_samples() && n <= chunk_samples(g) ? x.data.data() : nullptr;
    cols_shape_ = x.shape;
    cols_batch_ = n;
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    const auto g = detail::image_window<B>(name(), x.shape, InC, K, Stride, Pad);
    const auto n = x.batch();
    B::row_sums(B::view(dy.data.data(), OutC, g.out_pixels() * n), bias_grad);
    if (dx) dx->resize(x.shape, n);
    const auto step = g.out_pixels() * OutC;
    // dW (+)= dY cols^T over one chunk; dX's columns of the chunk from W^T dY.
    const bool reuse = !by_samples() && cols_of_ == x.data.data() && cols_batch_ == n && cols_shape_ == x.shape;
    cols_of_ = nullptr;
    auto chunk_backward = [&](typename B::index first, typename B::index count, bool accumulate, matrix& cols,
                              matrix& dcols, matrix& wgrad) {
      if (!reuse) B::template im2col<InC, K>(x.data, first, count, g, cols);
      const auto dout = B::view(dy.data.data() + first * step, OutC, g.out_pixels() * count);
      B::gemm(false, true, 1.f, dout, cols, accumulate ? 1.f : 0.f, wgrad);
      if (dx) {
        B::gemm(true, false, 1.f, weight, dout, 0.f, dcols);
        B::template col2im<InC, K>(dcols, first, count, g, dx->data);
      }
    };
    if (by_samples()) {
      // Each worker sums its samples' weight gradient in its own matrix; then one sum.
      const int workers = B::threads();
      worker_cols_.resize(workers);
      worker_dcols_.resize(workers);
      worker_wgrad_.resize(workers);
      B::parallel_parts(n, [&](int w, auto first, auto count) {
        worker_wgrad_[w].resize(OutC, K * K * InC);
        bool accumulate = false;
        for_chunks(g, first, count, [&](auto f, auto c) {
          chunk_backward(f, c, accumulate, worker_cols_[w], worker_dcols_[w], worker_wgrad_[w]);
          accumulate = true;
        });
      });
      const int used = static_cast<int>(std::min<typename B::index>(workers, n));
      weight_grad = worker_wgrad_[0];
      for (int w = 1; w < used; ++w)
        B::apply([] FASTTRAIN_HD(float& a, const float& b) { a += b; }, weight_grad, worker_wgrad_[w]);
    } else {
      bool accumulate = false;
      for_chunks(g, 0, n, [&](auto f, auto c) {
        chunk_backward(f, c, accumulate, cols_, dcols_, weight_grad);
        accumulate = true;
      });
    }
  }

  void reset_parameters(Rng& rng) {
    initialize<B>(weight, K * K * InC, K * K * OutC, init_, rng);
    bias.setZero();
  }

  /// OutC x (K*K*InC); column (ky*K + kx)*InC + c holds the weights of input channel c at
  /// kernel position (ky, kx).
  matrix weight, bias, weight_grad, bias_grad;

 private:
  typename B::index chunk_samples(const typename B::window& g) const {
    const auto per_sample = g.patch() * g.out_pixels() * static_cast<std::int64_t>(sizeof(float));
    return std::max<typename B::index>(1, chunk_bytes_ / std::max<std::int64_t>(per_sample, 1));
  }
  /// Calls f(first, count) for consecutive chunks of samples [first, first + n).
  template <class F>
  void for_chunks(const typename B::window& g, typename B::index first, typename B::index n, F&& f) const {
    const auto chunk = chunk_samples(g);
    for (auto done = typename B::index{0}; done < n; done += chunk) f(first + done, std::min(chunk, n - done));
  }
  bool by_samples() const {
    if (B::threads() < 2) return false;
    if (parallel_ == ConvParallel::automatic) return K * K * InC <= thin_patch;
    return parallel_ == ConvParallel::samples;
  }
  Init init_;
  std::int64_t chunk_bytes_ = default_chunk_bytes;
  ConvParallel parallel_ = ConvParallel::automatic;
  matrix cols_, dcols_;
  std::vector<matrix> worker_cols_, worker_dcols_, worker_wgrad_;
  // The input whose patches cols_ holds (the whole batch, from a training forward), or null.
  const float* cols_of_ = nullptr;
  Shape cols_shape_;
  typename B::index cols_batch_ = 0;
};

enum class PoolKind { max, average };

/// Max or mean over K x K windows with stride S (default K), no padding.
template <PoolKind Kind, std::int64_t K, std::int64_t S = K, class B = default_backend>
class BasicPool2d : public parameterless {
  static_assert(K > 0 && S > 0, "fasttrain::nn::MaxPool2d / AvgPool2d: need K > 0 and S > 0");

 public:
  using backend = B;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = dynamic;
  template <class B2>
  using rebind = BasicPool2d<Kind, K, S, B2>;

  static std::string name() {
    return std::string(Kind == PoolKind::max ? "MaxPool2d<" : "AvgPool2d<") + std::to_string(K) + "," +
           std::to_string(S) + ">";
  }
  Shape output_shape(const Shape& in) const {
    const auto g = detail::image_window<B>(name(), in, any, K, S, 0);
    return Shape(g.C, g.Ho, g.Wo);
  }
  void forward(const tensor& x, tensor& y, Mode) {
    detail::check_batch<B>(name(), x);
    const auto g = detail::image_window<B>(name(), x.shape, any, K, S, 0);
    y.shape = Shape(g.C, g.Ho, g.Wo);
    if constexpr (Kind == PoolKind::max)
      B::max_pool(x.data, g, y.data, arg_);
    else
      B::avg_pool(x.data, g, y.data);
  }
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!dx) return;
    const auto g = detail::image_window<B>(name(), x.shape, any, K, S, 0);
    dx->shape = x.shape;
    if constexpr (Kind == PoolKind::max)
      B::max_pool_backward(dy.data, arg_, g, dx->data);
    else
      B::avg_pool_backward(dy.data, g, dx->data);
  }

 private:
  typename B::int_buffer arg_;  // max pooling: the winning input of each output
};
template <std::int64_t K, std::int64_t S = K>
using MaxPool2d = BasicPool2d<PoolKind::max, K, S>;
template <std::int64_t K, std::int64_t S = K>
using AvgPool2d = BasicPool2d<PoolKind::average, K, S>;

/// Mean over all pixels of each channel: {C, H, W} -> {C}.
template <class B = default_backend>
class BasicGlobalAvgPool : public parameterless {
 public:
  using backend = B;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = dynamic;
  static constexpr std::int64_t out_channels = dynamic;
  template <class B2>
  using rebind = BasicGlobalAvgPool<B2>;

  static std::string name() { return "GlobalAvgPool"; }
  Shape output_shape(const Shape& in) const {
    if (in.rank != 3) throw shape_error(name() + ": expects image samples {C, H, W}, got shape " + in.str());
    return Shape(in[0]);
  }
  void forward(const tensor& x, tensor& y, Mode) {
    detail::check_batch<B>(name(), x);
    const Shape out = output_shape(x.shape);
    const auto c = out[0], pixels = x.shape[1] * x.shape[2], n = x.batch();
    y.resize(out, n);
    // Each sample is a C x pixels matrix (channels fastest): its row means. cpu::eigen takes
    // them with Eigen's row reductions, 25x faster on the CPU than the index kernel the other
    // backends run (which a GPU needs); the conformance suite compares the two.
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      for (typename B::index s = 0; s < n; ++s)
        y.data.col(s) = B::view(x.data.data() + s * c * pixels, c, pixels).rowwise().mean();
      return;
    }
    const float* in = x.data.data();
    float* o = y.data.data();
    const float scale = 1.f / static_cast<float>(pixels);
    B::for_index(c * n, [=] FASTTRAIN_HD(std::int64_t k) {
      const std::int64_t s = k / c, ch = k % c;
      const float* img = in + s * c * pixels + ch;
      float acc = 0.f;
      for (std::int64_t p = 0; p < pixels; ++p) acc += img[p * c];
      o[k] = acc * scale;
    });
  }
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!dx) return;
    const auto c = x.shape[0], pixels = x.shape[1] * x.shape[2], n = x.batch();
    dx->resize(x.shape, n);
    const float scale = 1.f / static_cast<float>(pixels);
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      for (typename B::index s = 0; s < n; ++s)
        B::view(dx->data.data() + s * c * pixels, c, pixels).colwise() = dy.data.col(s) * scale;
      return;
    }
    const float* g = dy.data.data();
    float* d = dx->data.data();
    B::for_index2(c, pixels * n, [=] FASTTRAIN_HD(std::int64_t ch, std::int64_t j) {
      d[ch + j * c] = g[(j / pixels) * c + ch] * scale;
    });
  }
};
using GlobalAvgPool = BasicGlobalAvgPool<>;

/// Mean over OH x OW bins that tile any input image: {C, H, W} -> {C, OH, OW}. Output row
/// i averages input rows [floor(i H / OH), ceil((i + 1) H / OH)), and likewise for columns
/// (PyTorch's adaptive pooling rule): bins tile the image exactly when OH divides H,
/// neighbours may share a row where it does not, and rows repeat when H < OH. An input
/// already OH x OW passes through unchanged. Put it before a Linear layer so that the
/// network accepts any image size (progressive resizing trains on smaller images).
template <std::int64_t OH, std::int64_t OW, class B = default_backend>
class BasicAdaptiveAvgPool2d : public parameterless {
  static_assert(OH > 0 && OW > 0, "fasttrain::nn::AdaptiveAvgPool2d: the output size OH x OW must be positive");

 public:
  using backend = B;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = dynamic;
  template <class B2>
  using rebind = BasicAdaptiveAvgPool2d<OH, OW, B2>;

  static std::string name() { return "AdaptiveAvgPool2d<" + std::to_string(OH) + "," + std::to_string(OW) + ">"; }
  Shape output_shape(const Shape& in) const {
    if (in.rank != 3) throw shape_error(name() + ": expects image samples {C, H, W}, got shape " + in.str());
    return Shape(in[0], OH, OW);
  }
  /// First input row (or column) of output bin i when `in` rows are pooled into `out` bins.
  static constexpr std::int64_t bin_begin(std::int64_t i, std::int64_t in, std::int64_t out) { return i * in / out; }
  /// One past the last input row of bin i.
  static constexpr std::int64_t bin_end(std::int64_t i, std::int64_t in, std::int64_t out) {
    return ((i + 1) * in + out - 1) / out;
  }

  void forward(const tensor& x, tensor& y, Mode) {
    detail::check_batch<B>(name(), x);
    const Shape out = output_shape(x.shape);
    const auto C = x.shape[0], H = x.shape[1], W = x.shape[2];
    const auto n = x.batch();
    if (H == OH && W == OW) {  // already the output size: the identity
      y.shape = x.shape;
      y.data = x.data;
      return;
    }
    y.resize(out, n);
    const auto in_sample = C * H * W, out_sample = C * OH * OW;
    if constexpr (std::is_same_v<B, cpu::eigen>) {  // per sample: 60x faster on the CPU than the kernel below
      for_samples(n, in_sample, [&](typename B::index s) {
        const float* img = x.data.data() + s * in_sample;
        float* o = y.data.data() + s * out_sample;
        for (std::int64_t oy = 0; oy < OH; ++oy) {
          const auto y0 = bin_begin(oy, H, OH), y1 = bin_end(oy, H, OH);
          for (std::int64_t ox = 0; ox < OW; ++ox) {
            const auto x0 = bin_begin(ox, W, OW), x1 = bin_end(ox, W, OW);
            float* d = o + C * (ox + OW * oy);
            std::fill(d, d + C, 0.f);
            for (auto iy = y0; iy < y1; ++iy)
              for (auto ix = x0; ix < x1; ++ix) {
                const float* v = img + C * (ix + W * iy);
                for (std::int64_t c = 0; c < C; ++c) d[c] += v[c];
              }
            const float scale = 1.f / static_cast<float>((y1 - y0) * (x1 - x0));
            for (std::int64_t c = 0; c < C; ++c) d[c] *= scale;
          }
        }
      });
      return;
    }
    const float* in = x.data.data();
    float* o = y.data.data();
    // One output value per call: the mean of its bin.
    B::for_index(out_sample * n, [=] FASTTRAIN_HD(std::int64_t k) {
      const std::int64_t s = k / out_sample, r = k % out_sample, c = r % C, oy = r / C / OW, ox = r / C % OW;
      const auto y0 = bin_begin(oy, H, OH), y1 = bin_end(oy, H, OH);
      const auto x0 = bin_begin(ox, W, OW), x1 = bin_end(ox, W, OW);
      const float* img = in + s * in_sample + c;
      float acc = 0.f;
      for (auto iy = y0; iy < y1; ++iy)
        for (auto ix = x0; ix < x1; ++ix) acc += img[C * (ix + W * iy)];
      o[k] = acc / static_cast<float>((y1 - y0) * (x1 - x0));
    });
  }
  /// The adjoint of forward: each output's gradient, divided by its bin's pixel count, is
  /// added to every input pixel of the bin.
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!dx) return;
    const auto C = x.shape[0], H = x.shape[1], W = x.shape[2];
    const auto n = x.batch();
    if (H == OH && W == OW) {
      dx->shape = x.shape;
      dx->data = dy.data;
      return;
    }
    const auto in_sample = C * H * W, out_sample = C * OH * OW;
    if constexpr (std::is_same_v<B, cpu::eigen>) {  // per sample, a scatter (the kernel below gathers)
      dx->shape = x.shape;
      dx->data.setZero(in_sample, n);
      for_samples(n, in_sample, [&](typename B::index s) {
        float* d = dx->data.data() + s * in_sample;
        const float* g = dy.data.data() + s * out_sample;
        for (std::int64_t oy = 0; oy < OH; ++oy) {
          const auto y0 = bin_begin(oy, H, OH), y1 = bin_end(oy, H, OH);
          for (std::int64_t ox = 0; ox < OW; ++ox) {
            const auto x0 = bin_begin(ox, W, OW), x1 = bin_end(ox, W, OW);
            const float scale = 1.f / static_cast<float>((y1 - y0) * (x1 - x0));
            const float* go = g + C * (ox + OW * oy);
            for (auto iy = y0; iy < y1; ++iy)
              for (auto ix = x0; ix < x1; ++ix) {
                float* v = d + C * (ix + W * iy);
                for (std::int64_t c = 0; c < C; ++c) v[c] += go[c] * scale;
              }
          }
        }
      });
      return;
    }
    dx->resize(x.shape, n);
    const float* g = dy.data.data();
    float* d = dx->data.data();
    // One input value per call (a gather: bins may share rows, so no two calls write one
    // place): the sum over the bins that contain it of their gradient / their pixel count.
    B::for_index(in_sample * n, [=] FASTTRAIN_HD(std::int64_t k) {
      const std::int64_t s = k / in_sample, r = k % in_sample, c = r % C, iy = r / C / W, ix = r / C % W;
      float acc = 0.f;
      for (std::int64_t oy = iy * OH / H; oy < OH && bin_begin(oy, H, OH) <= iy; ++oy) {
        const auto y0 = bin_begin(oy, H, OH), y1 = bin_end(oy, H, OH);
        if (iy >= y1) continue;
        for (std::int64_t ox = ix * OW / W; ox < OW && bin_begin(ox, W, OW) <= ix; ++ox) {
          const auto x0 = bin_begin(ox, W, OW), x1 = bin_end(ox, W, OW);
          if (ix >= x1) continue;
          acc += g[s * out_sample + C * (ox + OW * oy) + c] / static_cast<float>((y1 - y0) * (x1 - x0));
        }
      }
      d[k] = acc;
    });
  }

 private:
  // f(sample) for every sample; split over the threads when the batch is large enough to
  // pay for starting them.
  template <class F>
  static void for_samples(typename B::index n, std::int64_t sample_size, F&& f) {
    auto part = [&](int, typename B::index first, typename B::index count) {
      for (auto s = first; s < first + count; ++s) f(s);
    };
    if (n * sample_size >= (std::int64_t{1} << 16)) B::parallel_parts(n, part);
    else part(0, 0, n);
  }
};
template <std::int64_t OH, std::int64_t OW>
using AdaptiveAvgPool2d = BasicAdaptiveAvgPool2d<OH, OW>;

}  // namespace fasttrain::nn
