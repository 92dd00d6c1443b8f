// fasttrain/nn/squeeze_excite.hpp -- channel gating by a squeeze-and-excitation block
// (Hu, Shen & Sun 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507).
//
//   nn::SqueezeExcite2d<64, 16>   // after a Conv2d<..., 64, ...>: 64 channels, a 16-wide bottleneck
//
// Each sample's channels are rescaled by gates computed from the sample itself:
//
//   s = mean over the H W pixels of x          (squeeze: C values)
//   h = ReLU(W1 s + b1)                        (Latent values; W1 is Latent x C)
//   a = sigmoid(W2 h + b2)                     (excite: C gates in (0, 1); W2 is C x Latent)
//   y(c, p) = a(c) x(c, p)
//
// The two small fully connected layers ("fc1", "fc2") are initialised like nn::Linear's
// (He-uniform weights by default, zero biases). The batch's squeezes and gates are
// C x N and Latent x N matrices, so each excitation is one GEMM for the whole batch.
//
// Backward, with g = dL/dy:
//   da(c) = sum_p g(c, p) x(c, p),   dz2 = da a (1 - a),   dz1 = (W2^T dz2) [h > 0],
//   dx(c, p) = a(c) g(c, p) + (W1^T dz1)(c) / (H W)
// (the second term: every pixel contributes 1 / (H W) to the mean). Backward recomputes
// s, h and a from x in the same pass that sums g x, so it does not depend on anything
// the forward pass left behind.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "fasttrain/nn/activation.hpp"
#include "fasttrain/nn/conv.hpp"
#include "fasttrain/nn/init.hpp"
#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

template <std::int64_t C, std::int64_t Latent, class B = default_backend>
class SqueezeExcite2d {
  static_assert(C > 0, "fasttrain::nn::SqueezeExcite2d<C, Latent>: the channel count C must be positive");
  static_assert(Latent > 0, "fasttrain::nn::SqueezeExcite2d<C, Latent>: the bottleneck width Latent must be positive");

 public:
  using backend = B;
  using matrix = typename B::matrix;
  using tensor = typename B::tensor;
  using index = typename B::index;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = any;
  static constexpr std::int64_t in_channels = C;
  static constexpr std::int64_t out_channels = C;
  static constexpr std::int64_t latent = Latent;
  static constexpr bool has_parameters = true;
  template <class B2>
  using rebind = SqueezeExcite2d<C, Latent, B2>;

  explicit SqueezeExcite2d(Init init = Init::he_uniform) : init_(init) {
    fc1_weight.setZero(Latent, C);
    fc1_bias.setZero(Latent, 1);
    fc2_weight.setZero(C, Latent);
    fc2_bias.setZero(C, 1);
    fc1_weight_grad.setZero(Latent, C);
    fc1_bias_grad.setZero(Latent, 1);
    fc2_weight_grad.setZero(C, Latent);
    fc2_bias_grad.setZero(C, 1);
  }

  static std::string name() { return "SqueezeExcite2d<" + std::to_string(C) + "," + std::to_string(Latent) + ">"; }
  Shape output_shape(const Shape& in) const {
    if (in.rank != 3) throw shape_error(name() + ": expects image samples {C, H, W}, got shape " + in.str());
    if (in[0] != C)
      throw shape_error(name() + ": expects " + std::to_string(C) + " input channels, got shape " + in.str());
    if (in[1] < 1 || in[2] < 1) throw shape_error(name() + ": expects a non-empty image, got shape " + in.str());
    return in;
  }

  void forward(const tensor& x, tensor& y, Mode) {
    detail::check_batch<B>(name(), x);
    (void)output_shape(x.shape);
    const index n = x.batch(), pixels = x.shape[1] * x.shape[2], sample = C * pixels;
    squeeze_.resize(C, n);
    const float inv_pixels = 1.f / static_cast<float>(pixels);
    y.resize(x.shape, n);
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      for_samples(n, sample, [&](index s) {
        squeeze_.col(s) = B::view(x.data.data() + s * sample, C, pixels).rowwise().sum() * inv_pixels;
      });
      excite();
      for_samples(n, sample, [&](index s) {
        B::view(y.data.data() + s * sample, C, pixels) =
            B::view(x.data.data() + s * sample, C, pixels).array().colwise() * gate_.col(s).array();
      });
    } else {
      squeeze_kernel(x.data.data(), nullptr, pixels, n, inv_pixels);
      excite();
      const float *X = x.data.data(), *a = gate_.data();
      float* Y = y.data.data();
      B::for_index2(C, pixels * n, [=] FASTTRAIN_HD(index c, index j) { Y[c + j * C] = X[c + j * C] * a[c + (j / pixels) * C]; });
    }
  }

  // Index kernels for the backends other than cpu::eigen (public only because nvcc refuses
  // device lambdas in private member functions): the squeeze (channel means per sample) and,
  // with dy, da = sum over pixels of dy x.
  void squeeze_kernel(const float* X, const float* G, index pixels, index n, float inv_pixels) {
    float* sq = squeeze_.data();
    float* dg = G ? dgate_.data() : nullptr;
    B::for_index2(C, n, [=] FASTTRAIN_HD(index c, index s) {
      float acc = 0.f, dacc = 0.f;
      for (index p = 0; p < pixels; ++p) {
        const index at = (s * pixels + p) * C + c;
        acc += X[at];
        if (dg) dacc += G[at] * X[at];
      }
      sq[c + s * C] = acc * inv_pixels;
      if (dg) dg[c + s * C] = dacc;
    });
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    (void)output_shape(x.shape);
    const index n = x.batch(), pixels = x.shape[1] * x.shape[2], sample = C * pixels;
    squeeze_.resize(C, n);
    dgate_.resize(C, n);
    const float inv_pixels = 1.f / static_cast<float>(pixels);
    // One pass over x and dy: the squeeze s and da = sum_p g x, per sample.
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      for_samples(n, sample, [&](index s) {
        const auto X = B::view(x.data.data() + s * sample, C, pixels);
        const auto G = B::view(dy.data.data() + s * sample, C, pixels);
        squeeze_.col(s) = X.rowwise().sum() * inv_pixels;
        dgate_.col(s) = (G.array() * X.array()).rowwise().sum();
      });
    } else {
      squeeze_kernel(x.data.data(), dy.data.data(), pixels, n, inv_pixels);
    }
    excite();
    // dz2 = da a (1 - a); fc2's gradients; dz1 = (W2^T dz2) where h > 0; fc1's gradients.
    B::apply([] FASTTRAIN_HD(float& d, const float& a) { d *= a * (1.f - a); }, dgate_, gate_);
    B::gemm(false, true, 1.f, dgate_, hidden_, 0.f, fc2_weight_grad);
    B::row_sums(dgate_, fc2_bias_grad);
    B::gemm(true, false, 1.f, fc2_weight, dgate_, 0.f, dhidden_);
    B::apply([] FASTTRAIN_HD(float& d, const float& h) { d = h > 0.f ? d : 0.f; }, dhidden_, hidden_);
    B::gemm(false, true, 1.f, dhidden_, squeeze_, 0.f, fc1_weight_grad);
    B::row_sums(dhidden_, fc1_bias_grad);
    if (!dx) return;
    // dL/ds, spread evenly over the pixels: dx = a g + (W1^T dz1) / (H W).
    B::gemm(true, false, inv_pixels, fc1_weight, dhidden_, 0.f, dsqueeze_);
    dx->resize(x.shape, n);
    if constexpr (std::is_same_v<B, cpu::eigen>) {
      for_samples(n, sample, [&](index s) {
        B::view(dx->data.data() + s * sample, C, pixels) =
            (B::view(dy.data.data() + s * sample, C, pixels).array().colwise() * gate_.col(s).array()).colwise() +
            dsqueeze_.col(s).array();
      });
    } else {
      const float *G = dy.data.data(), *a = gate_.data(), *ds = dsqueeze_.data();
      float* DX = dx->data.data();
      B::for_index2(C, pixels * n, [=] FASTTRAIN_HD(index c, index j) {
        const index cs = c + (j / pixels) * C;
        DX[c + j * C] = G[c + j * C] * a[cs] + ds[cs];
      });
    }
  }

  template <class F>
  void for_each_parameter(F&& f) {
    f(fc1_weight, fc1_weight_grad);
    f(fc1_bias, fc1_bias_grad);
    f(fc2_weight, fc2_weight_grad);
    f(fc2_bias, fc2_bias_grad);
  }
  void parameter_names(std::vector<std::string>& out, const std::string& prefix) const {
    for (const char* p : {".fc1.weight", ".fc1.bias", ".fc2.weight", ".fc2.bias"}) out.push_back(prefix + name() + p);
  }
  template <class Archive>
  void state(Archive& ar) {
    ar("fc1.weight", fc1_weight);
    ar("fc1.bias", fc1_bias);
    ar("fc2.weight", fc2_weight);
    ar("fc2.bias", fc2_bias);
  }
  void reset_parameters(Rng& rng) {
    initialize<B>(fc1_weight, C, Latent, init_, rng);
    initialize<B>(fc2_weight, Latent, C, init_, rng);
    fc1_bias.setZero();
    fc2_bias.setZero();
  }

  /// fc1: Latent x C and Latent x 1; fc2: C x Latent and C x 1.
  matrix fc1_weight, fc1_bias, fc2_weight, fc2_bias;
  matrix fc1_weight_grad, fc1_bias_grad, fc2_weight_grad, fc2_bias_grad;

  // hidden_ = ReLU(W1 squeeze_ + b1), gate_ = sigmoid(W2 hidden_ + b2), for the batch. (Public
  // only because nvcc refuses device lambdas in private member functions.)
  void excite() {
    B::gemm(false, false, 1.f, fc1_weight, squeeze_, 0.f, hidden_);
    B::add_bias(hidden_, fc1_bias);
    B::apply([] FASTTRAIN_HD(float& v) { v = ops::relu::f(v); }, hidden_);
    B::gemm(false, false, 1.f, fc2_weight, hidden_, 0.f, gate_);
    B::add_bias(gate_, fc2_bias);
    B::apply([] FASTTRAIN_HD(float& v) { v = 1.f / (1.f + std::exp(-v)); }, gate_);
  }

 private:
  // f(sample) for every sample; split over the threads when the batch is large enough to
  // pay for starting them.
  template <class F>
  static void for_samples(index n, std::int64_t sample_size, F&& f) {
    auto part = [&](int, index first, index count) {
      for (auto s = first; s < first + count; ++s) f(s);
    };
    if (n * sample_size >= (std::int64_t{1} << 16)) B::parallel_parts(n, part);
    else part(0, 0, n);
  }

  Init init_;
  matrix squeeze_, hidden_, gate_;           // C x N, Latent x N, C x N
  matrix dgate_, dhidden_, dsqueeze_;        // their gradients
};

}  // namespace fasttrain::nn
