// fasttrain/nn/ghost_batchnorm.hpp -- batch normalisation over small "ghost" batches
// (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better", arXiv:1705.08741).
//
//   nn::GhostBatchNorm2d<64>       // in place of BatchNorm2d<64>: statistics over 32 samples at a time
//   nn::GhostBatchNorm2d<64, 16>   // ghost batches of 16 samples
//
// Training mode splits the batch into consecutive chunks of GhostSize samples (the last
// one holds what is left, and may be smaller) and normalises each chunk by its own
// per-channel mean and biased variance, over the chunk's samples and pixels:
//   y = weight (x - mean_k) / sqrt(var_k + eps) + bias          (x in chunk k)
// so a large batch sees the noisier statistics of small batches, which regularises
// large-batch training. The learned weight (init 1) and bias (init 0) are shared by all
// chunks. The running statistics are updated once per chunk, in chunk order, exactly as
// BatchNorm2d updates them once per batch:
//   running = (1 - momentum) running + momentum chunk_stat   (variance unbiased: m_k / (m_k - 1))
// Evaluation mode uses the running statistics, as BatchNorm2d does.
//
// A drop-in replacement for BatchNorm2d<C>: the same channel traits, constructor
// arguments and checks, momentum() / set_momentum(), and the same state records (momentum, eps, weight, bias,
// running_mean, running_var), so a BatchNorm2d's state loads into it and back. A batch of
// at most GhostSize samples is one chunk, and gives exactly BatchNorm2d's output,
// gradients and running statistics. With channels-fastest samples each chunk is a
// contiguous C x (pixels * chunk) block of the batch: per-chunk statistics are row means
// of that block, and backward is BatchNorm's per chunk.
#pragma once

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "fasttrain/nn/batchnorm.hpp"
#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

template <std::int64_t C, std::int64_t GhostSize = 32, class B = default_backend>
class GhostBatchNorm2d : public weight_and_bias<GhostBatchNorm2d<C, GhostSize, B>> {
  static_assert(C > 0, "fasttrain::nn::GhostBatchNorm2d: channel count must be positive");
  static_assert(GhostSize > 0, "fasttrain::nn::GhostBatchNorm2d: the ghost batch size (samples per chunk) must be positive");

 public:
  using backend = B;
  using matrix = typename B::matrix;
  using tensor = typename B::tensor;
  using index = typename B::index;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = any;
  static constexpr std::int64_t in_channels = C;
  static constexpr std::int64_t out_channels = C;
  static constexpr std::int64_t ghost_size = GhostSize;
  static constexpr bool has_parameters = true;
  template <class B2>
  using rebind = GhostBatchNorm2d<C, GhostSize, B2>;

  explicit GhostBatchNorm2d(float momentum = 0.1f, float eps = 1e-5f) : momentum_(momentum), eps_(eps) {
    fasttrain::detail::require(momentum > 0.f && momentum <= 1.f,
                               "fasttrain::nn::GhostBatchNorm2d: momentum must be in (0, 1], got ", momentum);
    fasttrain::detail::require(eps > 0.f, "fasttrain::nn::GhostBatchNorm2d: eps must be positive, got ", eps);
    weight.setOnes(C, 1);
    bias.setZero(C, 1);
    weight_grad.setZero(C, 1);
    bias_grad.setZero(C, 1);
    running_mean.setZero(C, 1);
    running_var.setOnes(C, 1);
  }

  static std::string name() {
    return "GhostBatchNorm2d<" + std::to_string(C) + "," + std::to_string(GhostSize) + ">";
  }
  float momentum() const { return momentum_; }
  /// The running statistics' update factor from now on, as BatchNorm2d::set_momentum (with
  /// 1, the running statistics are those of the last ghost batch of the last forward).
  void set_momentum(float momentum) {
    fasttrain::detail::require(momentum > 0.f && momentum <= 1.f,
                               "fasttrain::nn::GhostBatchNorm2d: momentum must be in (0, 1], got ", momentum);
    momentum_ = momentum;
  }
  Shape output_shape(const Shape& in) const {
    if (in[0] != C || in.size() % C != 0)
      throw shape_error(name() + ": expects " + std::to_string(C) + " channels, got shape " + in.str());
    return in;
  }

  /// Number of ghost batches a batch of n samples is split into.
  static constexpr index chunks(index n) { return (n + GhostSize - 1) / GhostSize; }

  void forward(const tensor& x, tensor& y, Mode mode) {
    (void)output_shape(x.shape);
    if (x.sample_size() != x.shape.size())
      throw shape_error(name() + ": batch values do not match the sample shape " + x.shape.str());
    const index n = x.batch(), per_sample = x.shape.size() / C;  // values per channel in one sample
    const index m = per_sample * n;
    y.resize(x.shape, n);
    if constexpr (!std::is_same_v<B, cpu::eigen>) {
      forward_kernels(x, y, mode, n, per_sample);
    } else {
      if (mode == Mode::eval) {
        const auto X = B::view(x.data.data(), C, m);
        auto Y = B::view(y.data.data(), C, m);
        const matrix scale = weight.array() / (running_var.array() + eps_).sqrt();
        const matrix shift = bias.array() - running_mean.array() * scale.array();
        Y = (X.array().colwise() * scale.col(0).array()).colwise() + shift.col(0).array();
        trained_ = false;
        return;
      }
      const index k_count = chunks(n);
      const index last = n == 0 ? 0 : n - (k_count - 1) * GhostSize;  // samples in the last (smallest) chunk
      if (last * per_sample < 2)
        throw shape_error(name() + ": training needs more than one value per channel in every ghost batch (the last of " +
                          std::to_string(n) + " samples split into chunks of " + std::to_string(GhostSize) + " has " +
                          std::to_string(last * per_sample) + ")");
      xhat_.resize(C, m);
      invstd_.resize(C, k_count);
      for (index k = 0; k < k_count; ++k) {
        const index first = k * GhostSize * per_sample, mk = std::min<index>(GhostSize, n - k * GhostSize) * per_sample;
        const auto X = B::view(x.data.data() + first * C, C, mk);
        auto Y = B::view(y.data.data() + first * C, C, mk);
        auto xhat = B::view(xhat_.data() + first * C, C, mk);
        // BatchNorm2d's training step on the chunk's C x mk block.
        const matrix mean = X.rowwise().mean();
        xhat = X.colwise() - mean.col(0);
        const matrix var = xhat.array().square().rowwise().mean();
        const matrix invstd = (var.array() + eps_).rsqrt();
        invstd_.col(k) = invstd.col(0);
        xhat.array().colwise() *= invstd.col(0).array();
        Y = (xhat.array().colwise() * weight.col(0).array()).colwise() + bias.col(0).array();
        running_mean = (1.f - momentum_) * running_mean + momentum_ * mean;
        running_var = (1.f - momentum_) * running_var +
                      (momentum_ * static_cast<float>(mk) / static_cast<float>(mk - 1)) * var;
      }
      trained_ = true;
    }
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!trained_) throw std::logic_error(name() + ": backward needs a training-mode forward");
    const index n = x.batch(), per_sample = x.shape.size() / C, m = per_sample * n;
    if (xhat_.cols() != m || invstd_.cols() != chunks(n))
      throw std::logic_error(name() + ": backward's batch is not the one of the last training-mode forward");
    if constexpr (!std::is_same_v<B, cpu::eigen>) {
      backward_kernels(x.shape, dy, dx, n, per_sample);
    } else {
      // The shared weight and bias collect their gradients over all chunks.
      const auto DY = B::view(dy.data.data(), C, m);
      bias_grad = DY.rowwise().sum();
      weight_grad = (DY.array() * xhat_.array()).rowwise().sum();
      if (!dx) return;
      dx->resize(x.shape, n);
      for (index k = 0; k < chunks(n); ++k) {
        const index first = k * GhostSize * per_sample, mk = std::min<index>(GhostSize, n - k * GhostSize) * per_sample;
        const auto dyk = B::view(dy.data.data() + first * C, C, mk);
        const auto xhat = B::view(xhat_.data() + first * C, C, mk);
        auto DX = B::view(dx->data.data() + first * C, C, mk);
        // Per chunk: dx = gamma invstd_k / m_k (m_k dy - sum_k(dy) - xhat sum_k(dy xhat)).
        const matrix sum_dy = dyk.rowwise().sum();
        const matrix sum_dy_xhat = (dyk.array() * xhat.array()).rowwise().sum();
        const matrix scale = weight.array() * invstd_.col(k).array() * (1.f / static_cast<float>(mk));
        DX = ((dyk.array() * static_cast<float>(mk)).colwise() - sum_dy.col(0).array() -
              xhat.array().colwise() * sum_dy_xhat.col(0).array())
                 .colwise() *
             scale.col(0).array();
      }
    }
  }

  /// BatchNorm2d's records, in BatchNorm2d's order: the two layers' states are interchangeable.
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

  // The same formulas as index kernels, for the backends other than cpu::eigen (public only
  // because nvcc refuses device lambdas in private member functions).
  void forward_kernels(const tensor& x, tensor& y, Mode mode, index n, index per_sample) {
    using K = detail::batchnorm_kernels<B>;
    if (mode == Mode::eval) {
      K::eval(x.data.data(), y.data.data(), C, per_sample * n, weight, bias, running_mean, running_var, eps_);
      trained_ = false;
      return;
    }
    const index k_count = chunks(n);
    const index last = n == 0 ? 0 : n - (k_count - 1) * GhostSize;
    if (last * per_sample < 2)
      throw shape_error(name() + ": training needs more than one value per channel in every ghost batch (the last of " +
                        std::to_string(n) + " samples split into chunks of " + std::to_string(GhostSize) + " has " +
                        std::to_string(last * per_sample) + ")");
    xhat_.resize(C, per_sample * n);
    invstd_.resize(C, k_count);
    for (index k = 0; k < k_count; ++k) {  // BatchNorm2d's training step on each chunk's block
      const index first = k * GhostSize * per_sample, mk = std::min<index>(GhostSize, n - k * GhostSize) * per_sample;
      K::train(x.data.data() + first * C, y.data.data() + first * C, xhat_.data() + first * C, invstd_.data() + k * C,
               C, mk, weight, bias, eps_, momentum_, running_mean, running_var, mean_, var_);
    }
    trained_ = true;
  }
  void backward_kernels(const Shape& shape, const tensor& dy, tensor* dx, index n, index per_sample) {
    using K = detail::batchnorm_kernels<B>;
    const float *DY = dy.data.data(), *xh = xhat_.data();
    K::parameter_grads(DY, xh, C, per_sample * n, bias_grad, weight_grad, tmp_);  // shared by all chunks
    if (!dx) return;
    dx->resize(shape, n);
    for (index k = 0; k < chunks(n); ++k) {  // each chunk's input gradient, from its own sums
      const index first = k * GhostSize * per_sample, mk = std::min<index>(GhostSize, n - k * GhostSize) * per_sample;
      B::row_sums(B::view(DY + first * C, C, mk), mean_);            // sum of dy over the chunk
      B::row_sums(B::view(tmp_.data() + first * C, C, mk), var_);    // sum of dy xhat over the chunk
      K::input_grad(DY + first * C, xh + first * C, dx->data.data() + first * C, C, mk, weight,
                    invstd_.data() + k * C, mean_.data(), var_.data());
    }
  }

 private:
  float momentum_, eps_;
  matrix xhat_;    // C x (pixels * batch): every chunk's normalised input
  matrix mean_, var_, tmp_;  // the kernel path's scratch
  matrix invstd_;  // C x chunks
  bool trained_ = false;
};

}  // namespace fasttrain::nn
