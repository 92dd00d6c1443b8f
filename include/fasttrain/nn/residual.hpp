// fasttrain/nn/residual.hpp -- residual blocks: y = Body(x) + Shortcut(x).
//
//   using Block = nn::Residual<nn::Sequential<nn::Conv2d<32, 32, 3, 1, 1>, nn::BatchNorm2d<32>, nn::ReLU,
//                                             nn::Conv2d<32, 32, 3, 1, 1>, nn::BatchNorm2d<32>>>;
//   using Down = nn::Residual<nn::Sequential<nn::Conv2d<32, 64, 3, 2, 1>, nn::BatchNorm2d<64>, nn::ReLU,
//                                            nn::Conv2d<64, 64, 3, 1, 1>, nn::BatchNorm2d<64>>,
//                             nn::Conv2d<32, 64, 1, 2, 0>>;   // projection shortcut
//
// The shortcut defaults to the identity, which requires the body to keep the channel
// count (checked at compile time) and the shape (checked at run time).
//
// Stochastic depth (methods::StochasticDepth) acts through set_body(): for the next
// training-mode forward and its backward, the body is either skipped (y = Shortcut(x); the
// body costs nothing and its gradients are zero) or its output is scaled. Evaluation-mode
// forwards always run the whole block unscaled.
#pragma once

#include <string>
#include <vector>

#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

/// y = x.
template <class B = default_backend>
class BasicIdentity : public parameterless {
 public:
  using backend = B;
  using tensor = typename B::tensor;
  static constexpr std::int64_t in_features = any;
  static constexpr std::int64_t out_features = any;
  template <class B2>
  using rebind = BasicIdentity<B2>;
  static std::string name() { return "Identity"; }
  Shape output_shape(const Shape& in) const { return in; }
  void forward(const tensor& x, tensor& y, Mode) { y = x; }
  void backward(const tensor&, const tensor&, const tensor& dy, tensor* dx) {
    if (dx) *dx = dy;
  }
};
using Identity = BasicIdentity<>;


template <class Body, class Shortcut = BasicIdentity<typename Body::backend>>
class Residual {
  static_assert(std::is_same_v<typename Body::backend, typename Shortcut::backend>,
                "fasttrain::nn::Residual: body and shortcut must use the same backend");
  static constexpr std::int64_t body_in = detail::in_channels_of<Body>(), body_out = detail::out_channels_of<Body>();
  static constexpr std::int64_t sc_in = detail::in_channels_of<Shortcut>(), sc_out = detail::out_channels_of<Shortcut>();
  static_assert(body_in < 0 || sc_in < 0 || body_in == sc_in,
                "fasttrain::nn::Residual: body and shortcut take different channel counts");
  static_assert(body_out < 0 || (sc_out == any ? body_in < 0 || body_out == body_in : sc_out < 0 || body_out == sc_out),
                "fasttrain::nn::Residual: the body's output channels differ from the shortcut's (an identity "
                "shortcut needs a body that keeps the channel count; otherwise give a projection shortcut)");

 public:
  using backend = typename Body::backend;
  using tensor = typename backend::tensor;
  static constexpr std::int64_t in_features = Body::in_features;
  static constexpr std::int64_t out_features = Body::out_features;
  static constexpr std::int64_t in_channels = body_in >= 0 ? body_in : sc_in;
  static constexpr std::int64_t out_channels = body_out >= 0 ? body_out : sc_out;
  static constexpr bool has_parameters = Body::has_parameters || Shortcut::has_parameters;
  template <class B2>
  using rebind = Residual<typename Body::template rebind<B2>, typename Shortcut::template rebind<B2>>;

  static std::string name() { return "Residual<" + Body::name() + "," + Shortcut::name() + ">"; }
  Body& body() { return body_; }
  Shortcut& shortcut() { return shortcut_; }

  Shape output_shape(const Shape& in) const {
    const Shape a = body_.output_shape(in), b = shortcut_.output_shape(in);
    if (!(a == b))
      throw shape_error(name() + ": body gives " + a.str() + " but the shortcut gives " + b.str());
    return a;
  }

  /// For training-mode passes from now on: `active` false skips the body (y = Shortcut(x)),
  /// true adds `scale` * Body(x). set_body(true, 1) restores the plain block.
  void set_body(bool active, float scale = 1.f) {
    body_active_ = active;
    body_scale_ = scale;
  }
  bool body_active() const { return body_active_; }
  float body_scale() const { return body_scale_; }

  void forward(const tensor& x, tensor& y, Mode mode) {
    train_skip_ = mode == Mode::train && !body_active_;
    train_scale_ = mode == Mode::train ? body_scale_ : 1.f;
    if (train_skip_) {
      shortcut_.forward(x, y, mode);
      if (!(y.shape == body_.output_shape(x.shape)))
        throw shape_error(name() + ": body gives " + body_.output_shape(x.shape).str() + " but the shortcut gives " +
                          y.shape.str());
      return;
    }
    body_.forward(x, y, mode);
    shortcut_.forward(x, short_out_, mode);
    if (!(y.shape == short_out_.shape))
      throw shape_error(name() + ": body gives " + y.shape.str() + " but the shortcut gives " + short_out_.shape.str());
    const float scale = train_scale_;
    backend::apply([=] FASTTRAIN_HD(float& yi, const float& si) { yi = yi * scale + si; }, y.data, short_out_.data);
  }

  void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) {
    if (train_skip_) {  // the body did not run: its gradients are zero, dx is the shortcut's
      body_.for_each_parameter([](auto&, auto& g) { g.setZero(); });
      shortcut_.backward(x, y, dy, dx);
      return;
    }
    const tensor* dbody_in = &dy;
    if (train_scale_ != 1.f) {
      scaled_dy_.shape = dy.shape;
      scaled_dy_.data.resize(dy.data.rows(), dy.data.cols());
      const float scale = train_scale_;
      backend::apply([=] FASTTRAIN_HD(float& si, const float& gi) { si = scale * gi; }, scaled_dy_.data, dy.data);
      dbody_in = &scaled_dy_;
    }
    body_.backward(x, y, *dbody_in, dx ? &dbody_ : nullptr);
    if (!dx) {
      shortcut_.backward(x, short_out_, dy, nullptr);
      return;
    }
    shortcut_.backward(x, short_out_, dy, dx);
    backend::apply([] FASTTRAIN_HD(float& di, const float& bi) { di += bi; }, dx->data, dbody_.data);
  }

  template <class F>
  void for_each_parameter(F&& f) {
    body_.for_each_parameter(f);
    shortcut_.for_each_parameter(f);
  }
  template <class F>
  void for_each_child(F&& f) {
    f(body_);
    f(shortcut_);
  }
  void parameter_names(std::vector<std::string>& out, const std::string& prefix) const {
    body_.parameter_names(out, prefix + "body.");
    shortcut_.parameter_names(out, prefix + "shortcut.");
  }
  template <class Archive>
  void state(Archive& ar) {
    {
      auto scope = ar.scope("body");
      if constexpr (requires { body_.state(ar); }) body_.state(ar);
    }
    auto scope = ar.scope("shortcut");
    if constexpr (requires { shortcut_.state(ar); }) shortcut_.state(ar);
  }
  void reset_parameters(Rng& rng) {
    Rng a = Rng::derive(rng(), 0), b = Rng::derive(rng(), 1);
    body_.reset_parameters(a);
    shortcut_.reset_parameters(b);
  }

 private:
  Body body_;
  Shortcut shortcut_;
  tensor short_out_, dbody_, scaled_dy_;
  bool body_active_ = true, train_skip_ = false;
  float body_scale_ = 1.f, train_scale_ = 1.f;
};

}  // namespace fasttrain::nn
