// fasttrain/nn/activation.hpp -- element-wise activations: ReLU, GELU, Tanh.
//
// Each is `Activation<Op>`: Op gives the scalar function and its derivative, and the
// backend's element-wise `apply` runs it over the batch (vectorised by the compiler
// where the body allows). Add an activation by writing a new Op.
#pragma once

#include <cmath>
#include <numbers>
#include <string>

#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

namespace ops {
struct relu {
  static constexpr const char* name = "ReLU";
  /// Written so that NaN propagates (NaN < 0 is false): a NaN input must reach the loss
  /// and be reported, not be silently turned into 0.
  static FASTTRAIN_HD float f(float x) { return x < 0.f ? 0.f : x; }
  /// dL/dx from the input x, the output y and dL/dy.
  static FASTTRAIN_HD float df(float, float y, float dy) { return y <= 0.f ? 0.f : dy; }
};
struct tanh {
  static constexpr const char* name = "Tanh";
  static FASTTRAIN_HD float f(float x) { return std::tanh(x); }
  static FASTTRAIN_HD float df(float, float y, float dy) { return dy * (1.f - y * y); }
};
/// Exact GELU, x * Phi(x), with Phi the standard normal CDF.
struct gelu {
  static constexpr const char* name = "GELU";
  static FASTTRAIN_HD float f(float x) { return 0.5f * x * (1.f + std::erf(x * std::numbers::sqrt2_v<float> * 0.5f)); }
  static FASTTRAIN_HD float df(float x, float, float dy) {
    const float cdf = 0.5f * (1.f + std::erf(x * std::numbers::sqrt2_v<float> * 0.5f));
    const float pdf = std::exp(-0.5f * x * x) * (0.5f * std::numbers::inv_sqrtpi_v<float> * std::numbers::sqrt2_v<float>);
    return dy * (cdf + x * pdf);
  }
};
}  // namespace ops

template <class Op, class B = default_backend>
class Activation : public parameterless {
 public:
  using backend = B;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = any;
  template <class B2>
  using rebind = Activation<Op, B2>;

  static std::string name() { return Op::name; }
  Shape output_shape(const Shape& in) const { return in; }

  void forward(const tensor& x, tensor& y, Mode) {
    y.resize(x.shape, x.batch());
    B::apply([] FASTTRAIN_HD(const float& xi, float& yi) { yi = Op::f(xi); }, x.data, y.data);
  }
  void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) {
    if (!dx) return;
    dx->resize(x.shape, x.batch());
    B::apply([] FASTTRAIN_HD(const float& xi, const float& yi, const float& dyi, float& dxi) { dxi = Op::df(xi, yi, dyi); },
             x.data, y.data, dy.data, dx->data);
  }
};

using ReLU = Activation<ops::relu>;
using GELU = Activation<ops::gelu>;
using Tanh = Activation<ops::tanh>;

}  // namespace fasttrain::nn
