// fasttrain/nn/linear.hpp -- fully connected layer y = W x + b with static sizes.
//
//   nn::Linear<784, 256> fc;                 // He-uniform weights, zero bias
//   nn::Linear<256, 10> head{nn::Init::xavier_uniform};
//
// In and Out are template arguments, so `Sequential` rejects two layers that do not
// fit at compile time. The input may have any per-sample shape whose size is In
// (a 1x28x28 image feeds Linear<784, N> directly).
#pragma once

#include <string>

#include "fasttrain/nn/init.hpp"
#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

template <std::int64_t In, std::int64_t Out, class B = default_backend>
class Linear : public weight_and_bias<Linear<In, Out, B>> {
  static_assert(In > 0 && Out > 0, "fasttrain::nn::Linear<In, Out>: both sizes must be positive");

 public:
  using backend = B;
  using matrix = typename B::matrix;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = In;
  static constexpr std::int64_t out_features = Out;
  static constexpr std::int64_t out_channels = dynamic;  // flat features: no channel structure
  static constexpr bool has_parameters = true;
  template <class B2>
  using rebind = Linear<In, Out, B2>;

  explicit Linear(Init init = Init::he_uniform) : init_(init) {
    weight.setZero(Out, In);
    bias.setZero(Out, 1);
    weight_grad.setZero(Out, In);
    bias_grad.setZero(Out, 1);
  }

  static std::string name() { return "Linear<" + std::to_string(In) + "," + std::to_string(Out) + ">"; }

  Shape output_shape(const Shape& in) const {
    if (in.size() != In)
      throw shape_error(name() + ": input samples have shape " + in.str() + " (size " +
                        std::to_string(in.size()) + "), expected size " + std::to_string(In));
    return Shape(Out);
  }

  void forward(const tensor& x, tensor& y, Mode) {
    if (x.sample_size() != In || x.shape.size() != In)
      throw shape_error(name() + ": input batch has " + std::to_string(x.sample_size()) +
                        " values per sample (declared sample shape " + x.shape.str() + "), expected " +
                        std::to_string(In));
    y.shape = Shape(Out);
    B::gemm(false, false, 1.f, weight, x.data, 0.f, y.data);
    B::add_bias(y.data, bias);
  }

  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    B::gemm(false, true, 1.f, dy.data, x.data, 0.f, weight_grad);  // dW = dY X^T
    B::row_sums(dy.data, bias_grad);                               // db = dY 1
    if (dx) {
      dx->shape = x.shape;
      B::gemm(true, false, 1.f, weight, dy.data, 0.f, dx->data);  // dX = W^T dY
    }
  }


  void reset_parameters(Rng& rng) {
    initialize<B>(weight, In, Out, init_, rng);
    bias.setZero();
  }

  matrix weight, bias, weight_grad, bias_grad;

 private:
  Init init_;
};

}  // namespace fasttrain::nn
