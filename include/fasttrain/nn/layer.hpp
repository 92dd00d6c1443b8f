// fasttrain/nn/layer.hpp -- the contract every layer satisfies, and shared helpers.
//
// A layer L over backend B (see tensor/eigen.hpp for what a backend provides):
//
//   using backend = B;
//   static constexpr std::int64_t in_features;    // per-sample input size, or nn::any
//   static constexpr std::int64_t out_features;   // per-sample output size, nn::any (= same as input)
//                                                 // or nn::dynamic (known at run time only)
//   static constexpr std::int64_t in_channels, out_channels;   // optional, same conventions;
//                                                 // absent means any (channel-preserving)
//   static std::string name();                    // "Linear<784,256>"
//   Shape output_shape(const Shape& in) const;    // throws shape_error for an input it cannot take
//   void forward(const tensor& x, tensor& y, Mode mode);
//   void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx);
//       // writes (not accumulates) its parameter gradients; dx == nullptr: input gradient not needed
//   template <class F> void for_each_parameter(F&& f);   // f(value, grad) for each parameter matrix
//   void parameter_names(std::vector<std::string>& out, const std::string& prefix) const;
//   void reset_parameters(Rng& rng);              // initialise parameters / reseed layer RNGs
//   template <class Ar> void state(Ar& ar);       // optional: parameters, buffers and RNGs for
//                                                 // checkpoints (io/archive.hpp); absent = none
//   template <class B2> using rebind = ...;       // the same layer on another backend
//   static constexpr bool has_parameters;         // false lets Sequential skip its backward
//   template <class F> void for_each_child(F&& f); // containers only (Sequential, Residual):
//                                                 // f(layer) for each directly nested layer
//
// `nn::Sequential` checks at compile time that static feature sizes of consecutive
// layers fit, and owns the activation buffers so a training step allocates nothing
// after the first batch.
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/tensor/eigen.hpp"

namespace fasttrain::nn {

/// For in_features / out_features / in_channels / out_channels:
/// `any`: accepts any size, and (as an output) produces the size it was given;
/// `dynamic`: produces a size known only at run time (a convolution's per-sample size
/// depends on the image size), so the next layer's static size is checked at run time.
inline constexpr std::int64_t any = -1;
inline constexpr std::int64_t dynamic = -2;

enum class Mode { train, eval };

/// Layers without parameters inherit these no-ops.
struct parameterless {
  static constexpr bool has_parameters = false;
  template <class F>
  void for_each_parameter(F&&) {}
  void parameter_names(std::vector<std::string>&, const std::string&) const {}
  void reset_parameters(Rng&) {}
};

namespace detail {
/// A layer's static channel counts; a layer that does not declare them keeps the channels.
template <class L>
constexpr std::int64_t in_channels_of() {
  if constexpr (requires { L::in_channels; }) return L::in_channels;
  else return any;
}
template <class L>
constexpr std::int64_t out_channels_of() {
  if constexpr (requires { L::out_channels; }) return L::out_channels;
  else return any;
}
}  // namespace detail

/// A layer whose body can be skipped or scaled step by step (nn::Residual): StochasticDepth
/// drives it, and SWA's BatchNorm pass turns every body on.
template <class L>
concept SkippableBody = requires(L& l) {
  l.set_body(true, 1.f);
  { l.body_active() } -> std::convertible_to<bool>;
  { l.body_scale() } -> std::convertible_to<float>;
};

/// A layer with BatchNorm running statistics and a settable momentum (BatchNorm2d,
/// GhostBatchNorm2d): SWA recomputes the statistics through it.
template <class L>
concept RunningStatistics = requires(L& l) {
  l.running_mean;
  l.running_var;
  l.set_momentum(1.f);
  { l.momentum() } -> std::convertible_to<float>;
};

/// Calls f(l) for `layer` itself and then, depth first in forward order, for every layer
/// nested in it (through containers' for_each_child). Methods use it to find the layers
/// they act on: `visit_layers(model, [](auto& l) { if constexpr (RunningStatistics<decltype(l)>) ... })`.
template <class L, class F>
void visit_layers(L& layer, F&& f) {
  f(layer);
  if constexpr (requires { layer.for_each_child([](auto&) {}); })
    layer.for_each_child([&](auto& child) { visit_layers(child, f); });
}

/// Calls f(tensor) for every BatchNorm-like layer's running mean, then its running variance,
/// in visit_layers order (EMA averages them, DataParallel averages them over ranks).
template <class Model, class F>
void for_each_running_statistic(Model& model, F&& f) {
  visit_layers(model, [&](auto& l) {
    if constexpr (RunningStatistics<decltype(l)>) {
      f(l.running_mean);
      f(l.running_var);
    }
  });
}

/// Layers whose parameters are `weight` and `bias` (with `weight_grad`, `bias_grad`)
/// inherit the parameter visiting and naming from here (CRTP).
template <class Derived>
struct weight_and_bias {
  template <class F>
  void for_each_parameter(F&& f) {
    auto& d = static_cast<Derived&>(*this);
    f(d.weight, d.weight_grad);
    f(d.bias, d.bias_grad);
  }
  void parameter_names(std::vector<std::string>& out, const std::string& prefix) const {
    out.push_back(prefix + Derived::name() + ".weight");
    out.push_back(prefix + Derived::name() + ".bias");
  }
  template <class Archive>
  void state(Archive& ar) {
    auto& d = static_cast<Derived&>(*this);
    ar("weight", d.weight);
    ar("bias", d.bias);
  }
};

}  // namespace fasttrain::nn
