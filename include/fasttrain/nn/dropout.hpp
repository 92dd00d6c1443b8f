// fasttrain/nn/dropout.hpp -- inverted dropout and Flatten.
//
//   nn::Dropout drop{0.2f};   // zeroes 20% of activations in training, scales the rest by 1/0.8
//
// In evaluation mode Dropout is the identity. Its mask RNG is seeded by
// reset_parameters (from the model's seed), so runs are reproducible.
#pragma once

#include <stdexcept>
#include <string>

#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

template <class B = default_backend>
class BasicDropout : public parameterless {
 public:
  using backend = B;
  using tensor = typename B::tensor;
  using matrix = typename B::matrix;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = any;
  template <class B2>
  using rebind = BasicDropout<B2>;

  explicit BasicDropout(float p = 0.5f) : p_(p) {
    fasttrain::detail::require(p >= 0.f && p < 1.f, "fasttrain::nn::Dropout: drop probability p must be in [0, 1), got ",
                    p);
  }

  static std::string name() { return "Dropout"; }
  float p() const { return p_; }
  Shape output_shape(const Shape& in) const { return in; }

  void reset_parameters(Rng& rng) { rng_.reseed(rng()); }
  template <class Archive>
  void state(Archive& ar) {
    ar.config("p", p_);
    ar("rng", rng_);
  }

  void forward(const tensor& x, tensor& y, Mode mode) {
    y.resize(x.shape, x.batch());
    if (mode == Mode::eval || p_ == 0.f) {
      y.data = x.data;
      mask_.resize(0, 0);  // no mask: backward of an eval forward is refused below
      return;
    }
    mask_.resize(x.data.rows(), x.data.cols());
    B::fill_bernoulli(mask_, 1.f - p_, 1.f / (1.f - p_), rng_);
    B::apply([] FASTTRAIN_HD(const float& xi, const float& mi, float& yi) { yi = xi * mi; }, x.data, mask_, y.data);
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!dx) return;
    dx->resize(x.shape, x.batch());
    if (p_ == 0.f) {
      dx->data = dy.data;
      return;
    }
    if (mask_.rows() != dy.data.rows() || mask_.cols() != dy.data.cols())
      throw std::logic_error("fasttrain::nn::Dropout: backward does not match the last training-mode forward");
    B::apply([] FASTTRAIN_HD(const float& dyi, const float& mi, float& dxi) { dxi = dyi * mi; }, dy.data, mask_, dx->data);
  }

 private:
  float p_;
  Rng rng_{0};
  matrix mask_;
};
using Dropout = BasicDropout<>;

/// Reshapes each sample to a flat feature vector ({C,H,W} -> {C*H*W}).
template <class B = default_backend>
class BasicFlatten : public parameterless {
 public:
  using backend = B;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = any;
  template <class B2>
  using rebind = BasicFlatten<B2>;

  static constexpr std::int64_t out_channels = dynamic;
  static std::string name() { return "Flatten"; }
  Shape output_shape(const Shape& in) const { return Shape(in.size()); }
  void forward(const tensor& x, tensor& y, Mode) {
    y.shape = Shape(x.shape.size());
    y.data = x.data;
  }
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    if (!dx) return;
    dx->shape = x.shape;
    dx->data = dy.data;
  }
};
using Flatten = BasicFlatten<>;

}  // namespace fasttrain::nn
