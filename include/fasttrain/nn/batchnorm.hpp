// fasttrain/nn/batchnorm.hpp -- batch normalisation over channels (Ioffe & Szegedy 2015).
//
//   nn::BatchNorm2d<64>          // after a Conv2d<..., 64, ...>
//
// Training mode normalises each channel by the mean and variance of the batch (over
// samples and pixels) and updates running statistics:
//   running = (1 - momentum) running + momentum batch_stat   (variance unbiased, as PyTorch)
// Evaluation mode uses the running statistics. Learned scale (weight, init 1) and shift
// (bias, init 0). Also takes flat {C} samples (BatchNorm1d). With channels-fastest
// samples the whole batch is one C x (pixels * batch) matrix: statistics are row means.
#pragma once

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

template <std::int64_t C, class B = default_backend>
class BatchNorm2d : public weight_and_bias<BatchNorm2d<C, B>> {
  static_assert(C > 0, "fasttrain::nn::BatchNorm2d: channel count must be positive");

 public:
  using backend = B;
  using matrix = typename B::matrix;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = any;
  static constexpr std::int64_t in_channels = C;
  static constexpr std::int64_t out_channels = C;
  static constexpr bool has_parameters = true;
  template <class B2>
  using rebind = BatchNorm2d<C, B2>;

  explicit BatchNorm2d(float momentum = 0.1f, float eps = 1e-5f) : momentum_(momentum), eps_(eps) {
    fasttrain::detail::require(momentum > 0.f && momentum <= 1.f,
                               "fasttrain::nn::BatchNorm2d: momentum must be in (0, 1], got ", momentum);
    fasttrain::detail::require(eps > 0.f, "fasttrain::nn::BatchNorm2d: eps must be positive, got ", eps);
    weight.setOnes(C, 1);
    bias.setZero(C, 1);
    weight_grad.setZero(C, 1);
    bias_grad.setZero(C, 1);
    running_mean.setZero(C, 1);
    running_var.setOnes(C, 1);
  }

  static std::string name() { return "BatchNorm2d<" + std::to_string(C) + ">"; }
  float momentum() const { return momentum_; }
  /// The running statistics' update factor from now on (SWA's statistics pass sets 1).
  void set_momentum(float momentum) {
    fasttrain::detail::require(momentum > 0.f && momentum <= 1.f,
                               "fasttrain::nn::BatchNorm2d: momentum must be in (0, 1], got ", momentum);
    momentum_ = momentum;
  }
  Shape output_shape(const Shape& in) const {
    if (in[0] != C || in.size() % C != 0)
      throw shape_error(name() + ": expects " + std::to_string(C) + " channels, got shape " + in.str());
    return in;
  }

  void forward(const tensor& x, tensor& y, Mode mode) {
    (void)output_shape(x.shape);
    if (x.sample_size() != x.shape.size())
      throw shape_error(name() + ": batch values do not match the sample shape " + x.shape.str());
    const auto m = x.data.size() / C;  // pixels * batch
    y.resize(x.shape, x.batch());
    if (mode == Mode::train && m < 2)
      throw shape_error(name() + ": training needs more than one value per channel (batch of 1x1 images?)");
    if constexpr (eigen_expressions) forward_eigen(x, y, mode, m);
    else forward_kernels(x, y, mode, m);
    trained_ = mode == Mode::train;
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!trained_) throw std::logic_error(name() + ": backward needs a training-mode forward");
    const auto m = x.data.size() / C;
    if (dx) dx->resize(x.shape, x.batch());
    if constexpr (eigen_expressions) backward_eigen(dy, dx, m);
    else backward_kernels(dy, dx, m);
  }

  // Two implementations of the same formulas. cpu::eigen uses Eigen expressions (vectorised
  // row reductions: 2.5x faster than the kernels on the CPU); the other backends use for_index
  // kernels over raw pointers, which run on a GPU. The conformance suite checks one against
  // the other. (Public only because nvcc refuses device lambdas in private member functions.)
  static constexpr bool eigen_expressions = std::is_same_v<B, cpu::eigen>;

  void forward_eigen(const tensor& x, tensor& y, Mode mode, std::int64_t m) {
    const auto X = B::view(x.data.data(), C, m);
    auto Y = B::view(y.data.data(), C, m);
    if (mode == Mode::eval) {
      const matrix scale = weight.array() / (running_var.array() + eps_).sqrt();
      const matrix shift = bias.array() - running_mean.array() * scale.array();
      Y = (X.array().colwise() * scale.col(0).array()).colwise() + shift.col(0).array();
      return;
    }
    const matrix mean = X.rowwise().mean();
    xhat_.resize(C, m);
    xhat_ = X.colwise() - mean.col(0);
    const matrix var = xhat_.array().square().rowwise().mean();
    invstd_ = (var.array() + eps_).rsqrt();
    xhat_.array().colwise() *= invstd_.col(0).array();
    Y = (xhat_.array().colwise() * weight.col(0).array()).colwise() + bias.col(0).array();
    running_mean = (1.f - momentum_) * running_mean + momentum_ * mean;
    running_var = (1.f - momentum_) * running_var +
                  (momentum_ * static_cast<float>(m) / static_cast<float>(m - 1)) * var;
  }
  void backward_eigen(const tensor& dy, tensor* dx, std::int64_t m) {
    const auto DY = B::view(dy.data.data(), C, m);
    bias_grad = DY.rowwise().sum();
    weight_grad = (DY.array() * xhat_.array()).rowwise().sum();
    if (!dx) return;
    auto DX = B::view(dx->data.data(), C, m);
    const float inv_m = 1.f / static_cast<float>(m);
    // dx = gamma invstd / m (m dy - sum(dy) - xhat sum(dy xhat))
    const matrix k = weight.array() * invstd_.array() * inv_m;
    DX = ((DY.array() * static_cast<float>(m)).colwise() - bias_grad.col(0).array() -
          xhat_.array().colwise() * weight_grad.col(0).array())
             .colwise() *
         k.col(0).array();
  }

  void forward_kernels(const tensor& x, tensor& y, Mode mode, std::int64_t m) {
    const float* X = x.data.data();
    float* Y = y.data.data();
    const float eps = eps_;
    if (mode == Mode::eval) {
      const float *w = weight.data(), *b = bias.data(), *rm = running_mean.data(), *rv = running_var.data();
      B::for_index2(C, m, [=] FASTTRAIN_HD(std::int64_t c, std::int64_t j) {
        const float scale = w[c] / std::sqrt(rv[c] + eps);
        Y[c + j * C] = X[c + j * C] * scale + (b[c] - rm[c] * scale);
      });
      return;
    }
    const float fm = static_cast<float>(m);
    B::row_sums(B::view(X, C, m), mean_);  // channel sums, then means
    B::apply([=] FASTTRAIN_HD(float& mu) { mu /= fm; }, mean_);
    xhat_.resize(C, m);
    float* xh = xhat_.data();
    const float* mu = mean_.data();
    B::for_index2(C, m, [=] FASTTRAIN_HD(std::int64_t c, std::int64_t j) {
      const float d = X[c + j * C] - mu[c];
      xh[c + j * C] = d;
      Y[c + j * C] = d * d;  // Y holds the squares until the last step
    });
    B::row_sums(B::view(Y, C, m), var_);
    invstd_.resize(C, 1);
    B::apply([=] FASTTRAIN_HD(float& v, float& is) {
      v /= fm;
      is = 1.f / std::sqrt(v + eps);
    }, var_, invstd_);
    const float *w = weight.data(), *b = bias.data(), *is = invstd_.data();
    B::for_index2(C, m, [=] FASTTRAIN_HD(std::int64_t c, std::int64_t j) {
      const float h = xh[c + j * C] * is[c];
      xh[c + j * C] = h;
      Y[c + j * C] = h * w[c] + b[c];
    });
    const float mom = momentum_, unbias = fm / static_cast<float>(m - 1);
    B::apply([=] FASTTRAIN_HD(float& rm, float& rv, const float& mu_c, const float& v) {
      rm = (1.f - mom) * rm + mom * mu_c;
      rv = (1.f - mom) * rv + (mom * unbias) * v;
    }, running_mean, running_var, mean_, var_);
  }
  void backward_kernels(const tensor& dy, tensor* dx, std::int64_t m) {
    const float* DY = dy.data.data();
    const float* xh = xhat_.data();
    B::row_sums(B::view(DY, C, m), bias_grad);
    tmp_.resize(C, m);
    float* t = tmp_.data();
    B::for_index(C * m, [=] FASTTRAIN_HD(std::int64_t k) { t[k] = DY[k] * xh[k]; });
    B::row_sums(tmp_, weight_grad);
    if (!dx) return;
    float* DX = dx->data.data();
    const float fm = static_cast<float>(m), inv_m = 1.f / fm;
    const float *w = weight.data(), *is = invstd_.data(), *bg = bias_grad.data(), *wg = weight_grad.data();
    B::for_index2(C, m, [=] FASTTRAIN_HD(std::int64_t c, std::int64_t j) {
      const std::int64_t k = c + j * C;
      DX[k] = (DY[k] * fm - bg[c] - xh[k] * wg[c]) * (w[c] * is[c] * inv_m);
    });
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("momentum", momentum_);
    ar.config("eps", eps_);
    ar("weight", weight);
    ar("bias", bias);
    ar("running_mean", running_mean);
    ar("running_var", running_var);
  }
  void reset_parameters(Rng&) {
    weight.setOnes();
    bias.setZero();
    running_mean.setZero();
    running_var.setOnes();
  }

  matrix weight, bias, weight_grad, bias_grad;
  matrix running_mean, running_var;  ///< state, not trained by the optimizer

 private:
  float momentum_, eps_;
  matrix xhat_, invstd_;
  matrix mean_, var_, tmp_;  // the kernel path's scratch
  bool trained_ = false;
};

}  // namespace fasttrain::nn
