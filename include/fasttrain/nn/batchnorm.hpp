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
    const auto X = B::view(x.data.data(), C, m);
    auto Y = B::view(y.data.data(), C, m);
    if (mode == Mode::eval) {
      const matrix scale = weight.array() / (running_var.array() + eps_).sqrt();
      const matrix shift = bias.array() - running_mean.array() * scale.array();
      Y = (X.array().colwise() * scale.col(0).array()).colwise() + shift.col(0).array();
      trained_ = false;
      return;
    }
    if (m < 2) throw shape_error(name() + ": training needs more than one value per channel (batch of 1x1 images?)");
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
    trained_ = true;
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!trained_) throw std::logic_error(name() + ": backward needs a training-mode forward");
    const auto m = x.data.size() / C;
    const auto DY = B::view(dy.data.data(), C, m);
    bias_grad = DY.rowwise().sum();
    weight_grad = (DY.array() * xhat_.array()).rowwise().sum();
    if (!dx) return;
    dx->resize(x.shape, x.batch());
    auto DX = B::view(dx->data.data(), C, m);
    const float inv_m = 1.f / static_cast<float>(m);
    // dx = gamma invstd / m (m dy - sum(dy) - xhat sum(dy xhat))
    const matrix k = weight.array() * invstd_.array() * inv_m;
    DX = ((DY.array() * static_cast<float>(m)).colwise() - bias_grad.col(0).array() -
          xhat_.array().colwise() * weight_grad.col(0).array())
             .colwise() *
         k.col(0).array();
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
  bool trained_ = false;
};

}  // namespace fasttrain::nn
