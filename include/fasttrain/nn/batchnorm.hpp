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

namespace detail {
/// BatchNorm's formulas as index kernels over a C x m block of channels-fastest values, for
/// the backends other than cpu::eigen. BatchNorm2d runs them on the whole batch, and
/// GhostBatchNorm2d on each ghost batch.
template <class B>
struct batchnorm_kernels {
  using matrix = typename B::matrix;
  using index = std::int64_t;

  /// Evaluation: Y = (X - running_mean) w / sqrt(running_var + eps) + b.
  static void eval(const float* X, float* Y, index C, index m, const matrix& weight, const matrix& bias,
                   const matrix& running_mean, const matrix& running_var, float eps) {
    const float *w = weight.data(), *b = bias.data(), *rm = running_mean.data(), *rv = running_var.data();
    B::for_index2(C, m, [=] FASTTRAIN_HD(index c, index j) {
      const float scale = w[c] / std::sqrt(rv[c] + eps);
      Y[c + j * C] = X[c + j * C] * scale + (b[c] - rm[c] * scale);
    });
  }

  /// Training on one block: xh = the normalised X, is = 1 / sqrt(batch variance + eps) per
  /// channel, Y = xh w + b, and the running statistics updated with this block's (variance
  /// unbiased). mean and var are scratch.
  static void train(const float* X, float* Y, float* xh, float* is, index C, index m, const matrix& weight,
                    const matrix& bias, float eps, float momentum, matrix& running_mean, matrix& running_var,
                    matrix& mean, matrix& var) {
    const float fm = static_cast<float>(m);
    B::row_sums(B::view(X, C, m), mean);  // channel sums, then means
    B::apply([=] FASTTRAIN_HD(float& mu) { mu /= fm; }, mean);
    const float* mu = mean.data();
    B::for_index2(C, m, [=] FASTTRAIN_HD(index c, index j) {
      const float d = X[c + j * C] - mu[c];
      xh[c + j * C] = d;
      Y[c + j * C] = d * d;  // Y holds the squares until the last pass
    });
    B::row_sums(B::view(Y, C, m), var);
    float* v = var.data();
    B::for_index(C, [=] FASTTRAIN_HD(index c) {
      v[c] /= fm;
      is[c] = 1.f / std::sqrt(v[c] + eps);
    });
    const float *w = weight.data(), *b = bias.data();
    B::for_index2(C, m, [=] FASTTRAIN_HD(index c, index j) {
      const float h = xh[c + j * C] * is[c];
      xh[c + j * C] = h;
      Y[c + j * C] = h * w[c] + b[c];
    });
    const float unbias = fm / static_cast<float>(m - 1);
    B::apply([=] FASTTRAIN_HD(float& rm, float& rv, const float& m1, const float& v1) {
      rm = (1.f - momentum) * rm + momentum * m1;
      rv = (1.f - momentum) * rv + (momentum * unbias) * v1;
    }, running_mean, running_var, mean, var);
  }

  /// The parameter gradients over all C x m values: bias_grad = sum dy, weight_grad =
  /// sum dy xh; `prod` keeps dy xh for input_grad.
  static void parameter_grads(const float* DY, const float* xh, index C, index m, matrix& bias_grad,
                              matrix& weight_grad, matrix& prod) {
    B::row_sums(B::view(DY, C, m), bias_grad);
    prod.resize(C, m);
    float* t = prod.data();
    B::for_index(C * m, [=] FASTTRAIN_HD(index k) { t[k] = DY[k] * xh[k]; });
    B::row_sums(prod, weight_grad);
  }

  /// dx = w is / m (m dy - sum(dy) - xh sum(dy xh)) on one block, given the block's sums.
  static void input_grad(const float* DY, const float* xh, float* DX, index C, index m, const matrix& weight,
                         const float* is, const float* sum_dy, const float* sum_dy_xh) {
    const float fm = static_cast<float>(m);
    const float* w = weight.data();
    B::for_index2(C, m, [=] FASTTRAIN_HD(index c, index j) {
      const index k = c + j * C;
      DX[k] = (DY[k] * fm - sum_dy[c] - xh[k] * sum_dy_xh[c]) * (w[c] * is[c] / fm);
    });
  }
};
}  // namespace detail

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
    using K = detail::batchnorm_kernels<B>;
    if (mode == Mode::eval) {
      K::eval(x.data.data(), y.data.data(), C, m, weight, bias, running_mean, running_var, eps_);
      return;
    }
    xhat_.resize(C, m);
    invstd_.resize(C, 1);
    K::train(x.data.data(), y.data.data(), xhat_.data(), invstd_.data(), C, m, weight, bias, eps_, momentum_,
             running_mean, running_var, mean_, var_);
  }
  void backward_kernels(const tensor& dy, tensor* dx, std::int64_t m) {
    using K = detail::batchnorm_kernels<B>;
    K::parameter_grads(dy.data.data(), xhat_.data(), C, m, bias_grad, weight_grad, tmp_);
    if (dx)
      K::input_grad(dy.data.data(), xhat_.data(), dx->data.data(), C, m, weight, invstd_.data(), bias_grad.data(),
                    weight_grad.data());
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
