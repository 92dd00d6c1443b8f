// fasttrain/nn/sequential.hpp -- a network as one type: Sequential<Layer...>.
//
//   using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU,
//                              nn::Linear<256, 128>, nn::ReLU,
//                              nn::Linear<128, 10>>;
//   MLP model;  model.reset_parameters(seed);
//   const auto& logits = model.forward(x, nn::Mode::train);
//   model.backward(dlogits);            // parameter gradients now hold dL/dparam
//
// Two consecutive layers whose static feature sizes disagree do not compile; the
// error names the position and both sizes (in check_link's template arguments).
// Sequential is itself a layer, so networks nest.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fasttrain/nn/layer.hpp"

namespace fasttrain::nn {

namespace detail {
/// Instantiated once per pair of consecutive layers; the compiler shows the numbers.
template <std::size_t LayerIndex, std::int64_t ProducedFeatures, std::int64_t ExpectedFeatures>
struct check_link {
  static_assert(ProducedFeatures == any || ExpectedFeatures == any || ProducedFeatures == ExpectedFeatures,
                "fasttrain::nn::Sequential: consecutive layers do not fit: layer number LayerIndex expects "
                "ExpectedFeatures input features but the layers before it produce ProducedFeatures "
                "(read the numbers from check_link<LayerIndex, ProducedFeatures, ExpectedFeatures> above)");
  static constexpr bool ok = true;
};

template <class... Ls>
struct chain {
  static constexpr std::size_t size = sizeof...(Ls);
  static constexpr std::array<std::int64_t, size> ins{Ls::in_features...};
  static constexpr std::array<std::int64_t, size> outs{Ls::out_features...};
  /// The static feature count produced by layers [0, i), or `any`.
  static constexpr std::int64_t produced_before(std::size_t i) {
    std::int64_t p = any;
    for (std::size_t j = 0; j < i; ++j)
      if (outs[j] != any) p = outs[j];
    return p;
  }
  static constexpr std::int64_t first_in() {
    for (std::size_t j = 0; j < size; ++j) {
      if (ins[j] != any) return ins[j];
      if (outs[j] != any) return any;
    }
    return any;
  }
  template <std::size_t... I>
  static constexpr bool check(std::index_sequence<I...>) {
    return (check_link<I, produced_before(I), ins[I]>::ok && ...);
  }
};
}  // namespace detail

template <class... Layers>
class Sequential {
  static_assert(sizeof...(Layers) > 0, "fasttrain::nn::Sequential needs at least one layer");
  using chain = detail::chain<Layers...>;
  static_assert(chain::check(std::index_sequence_for<Layers...>{}));
  static constexpr std::size_t N = sizeof...(Layers);

 public:
  using backend = typename std::tuple_element_t<0, std::tuple<Layers...>>::backend;
  static_assert((std::is_same_v<backend, typename Layers::backend> && ...),
                "fasttrain::nn::Sequential: all layers must use the same backend (use ::rebind<B>)");
  using tensor = typename backend::tensor;
  static constexpr std::int64_t in_features = chain::first_in();
  static constexpr std::int64_t out_features = chain::produced_before(N);
  static constexpr std::size_t num_layers = N;
  template <class B2>
  using rebind = Sequential<typename Layers::template rebind<B2>...>;

  Sequential() = default;
  explicit Sequential(Layers... layers) : layers_(std::move(layers)...) {}

  static std::string name() {
    std::string s = "Sequential<";
    std::size_t i = 0;
    ((s += (i++ ? "," : "") + Layers::name()), ...);
    return s + ">";
  }

  template <std::size_t I>
  auto& layer() { return std::get<I>(layers_); }
  template <std::size_t I>
  const auto& layer() const { return std::get<I>(layers_); }

  Shape output_shape(const Shape& in) const {
    Shape s = in;
    std::apply([&](const auto&... l) { ((s = l.output_shape(s)), ...); }, layers_);
    return s;
  }

  /// Runs every layer; returns the last layer's output (owned by this network).
  const tensor& forward(const tensor& x, Mode mode) {
    input_ = &x;
    forward_from<0>(x, mode);
    return outputs_[N - 1];
  }

  /// Backpropagates dL/d(output) of the last forward(); fills every parameter gradient.
  /// The gradient with respect to the network's input is not computed (nobody needs it).
  void backward(const tensor& dy) { backward_impl(*input_, outputs_[N - 1], dy, nullptr); }

  // ---- the layer contract, so that networks nest ------------------------------------
  void forward(const tensor& x, tensor& y, Mode mode) {
    forward(x, mode);
    y = outputs_[N - 1];
  }
  void backward(const tensor& x, const tensor& y, const tensor& dy, tensor* dx) {
    backward_impl(x, y, dy, dx);
  }

  template <class F>
  void for_each_parameter(F&& f) {
    std::apply([&](auto&... l) { (l.for_each_parameter(f), ...); }, layers_);
  }
  void parameter_names(std::vector<std::string>& out, const std::string& prefix) const {
    std::size_t i = 0;
    std::apply([&](const auto&... l) { ((l.parameter_names(out, prefix + std::to_string(i++) + "."), ...)); },
               layers_);
  }
  std::vector<std::string> parameter_names() const {
    std::vector<std::string> out;
    parameter_names(out, "");
    return out;
  }
  /// Number of trainable scalars.
  std::int64_t parameter_count() {
    std::int64_t n = 0;
    for_each_parameter([&](auto& p, auto&) { n += static_cast<std::int64_t>(p.size()); });
    return n;
  }

  void reset_parameters(Rng& rng) {
    std::size_t i = 0;
    std::apply(
        [&](auto&... l) {
          ((void)[&] {
            Rng layer_rng = Rng::derive(rng(), i++);
            l.reset_parameters(layer_rng);
          }(), ...);
        },
        layers_);
  }
  /// Seeded initialisation of every layer: the same seed gives the same weights.
  void reset_parameters(std::uint64_t seed) {
    Rng rng(seed);
    reset_parameters(rng);
  }

 private:
  template <std::size_t I>
  void forward_from(const tensor& x, Mode mode) {
    std::get<I>(layers_).forward(x, outputs_[I], mode);
    if constexpr (I + 1 < N) forward_from<I + 1>(outputs_[I], mode);
  }

  void backward_impl(const tensor& x, const tensor&, const tensor& dy, tensor* dx) {
    backward_step<N - 1>(x, dy, dx);
  }
  // grads_[i] holds dL/d(outputs_[i]); layer I reads dL/d(its output) and writes dL/d(its input).
  template <std::size_t I>
  void backward_step(const tensor& x, const tensor& dy, tensor* dx) {
    const tensor& in = I == 0 ? x : outputs_[I == 0 ? 0 : I - 1];
    tensor* din = I == 0 ? dx : &grads_[I == 0 ? 0 : I - 1];
    std::get<I>(layers_).backward(in, outputs_[I], dy, din);
    if constexpr (I > 0) backward_step<I - 1>(x, grads_[I - 1], dx);
  }

  std::tuple<Layers...> layers_;
  std::array<tensor, N> outputs_{};
  std::array<tensor, N> grads_{};
  const tensor* input_ = nullptr;
};

}  // namespace fasttrain::nn
