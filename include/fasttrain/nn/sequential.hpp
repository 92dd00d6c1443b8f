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
#include <stdexcept>
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
  static_assert(ProducedFeatures < 0 || ExpectedFeatures < 0 || ProducedFeatures == ExpectedFeatures,
                "fasttrain::nn::Sequential: consecutive layers do not fit: layer number LayerIndex expects "
                "ExpectedFeatures input features but the layers before it produce ProducedFeatures "
                "(read the numbers from check_link<LayerIndex, ProducedFeatures, ExpectedFeatures> above)");
  static constexpr bool ok = true;
};
template <std::size_t LayerIndex, std::int64_t ProducedChannels, std::int64_t ExpectedChannels>
struct check_channels {
  static_assert(ProducedChannels < 0 || ExpectedChannels < 0 || ProducedChannels == ExpectedChannels,
                "fasttrain::nn::Sequential: consecutive layers do not fit: layer number LayerIndex expects "
                "ExpectedChannels input channels but the layers before it produce ProducedChannels "
                "(read the numbers from check_channels<LayerIndex, ProducedChannels, ExpectedChannels> above)");
  static constexpr bool ok = true;
};

/// Static size bookkeeping along a chain of layers.
template <std::size_t N>
constexpr std::int64_t produced_before(const std::array<std::int64_t, N>& outs, std::size_t i) {
  std::int64_t p = any;
  for (std::size_t j = 0; j < i; ++j)
    if (outs[j] != any) p = outs[j];
  return p;
}
/// The static input size a chain demands: the first layer that fixes one, unless an
/// earlier layer already changes the size.
template <std::size_t N>
constexpr std::int64_t first_in(const std::array<std::int64_t, N>& ins, const std::array<std::int64_t, N>& outs) {
  for (std::size_t j = 0; j < N; ++j) {
    if (ins[j] != any) return ins[j];
    if (outs[j] != any) return any;
  }
  return any;
}

template <class... Ls>
struct chain {
  static constexpr std::size_t size = sizeof...(Ls);
  static constexpr std::array<bool, size> params{Ls::has_parameters...};
  /// Does any layer in [0, i) have parameters? (Then layer i must pass a gradient back.)
  static constexpr bool params_before(std::size_t i) {
    for (std::size_t j = 0; j < i; ++j)
      if (params[j]) return true;
    return false;
  }
  static constexpr std::array<std::int64_t, size> ins{Ls::in_features...};
  static constexpr std::array<std::int64_t, size> outs{Ls::out_features...};
  static constexpr std::array<std::int64_t, size> cins{in_channels_of<Ls>()...};
  static constexpr std::array<std::int64_t, size> couts{out_channels_of<Ls>()...};
  template <std::size_t... I>
  static constexpr bool check(std::index_sequence<I...>) {
    return (check_link<I, produced_before(outs, I), ins[I]>::ok && ...) &&
           (check_channels<I, produced_before(couts, I), cins[I]>::ok && ...);
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
  static constexpr std::int64_t in_features = detail::first_in(chain::ins, chain::outs);
  static constexpr std::int64_t out_features = detail::produced_before(chain::outs, N);
  static constexpr std::int64_t in_channels = detail::first_in(chain::cins, chain::couts);
  static constexpr std::int64_t out_channels = detail::produced_before(chain::couts, N);
  static constexpr std::size_t num_layers = N;
  static constexpr bool has_parameters = chain::params_before(N);
  template <class B2>
  using rebind = Sequential<typename Layers::template rebind<B2>...>;

  /// Default construction initialises every layer from seed 0, so a network is never
  /// silently all-zero; call reset_parameters(seed) to choose the seed.
  Sequential() { reset_parameters(std::uint64_t{0}); }
  /// Takes layers as they are (their parameters are not re-initialised).
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
  /// `x` must stay alive and unchanged until backward() when mode is train.
  const tensor& forward(const tensor& x, Mode mode) {
    input_ = mode == Mode::train ? &x : nullptr;
    forward_from<0>(x, mode);
    return outputs_[N - 1];
  }

  /// Layers [0, k) get no backward pass from backward(dy) from now on: their parameter
  /// gradients are left as they are (zero them if the optimizer steps them; see
  /// methods::LayerFreezing), and backpropagation stops at layer k. 0 unfreezes all.
  void freeze_prefix(std::size_t k) {
    if (k > N)
      throw std::out_of_range(name() + "::freeze_prefix: " + std::to_string(k) + " layers, but the network has " +
                              std::to_string(N));
    frozen_ = k;
  }
  std::size_t frozen_prefix() const { return frozen_; }
  /// Whether layer i has parameters (in the order of the layers).
  static constexpr bool layer_has_parameters(std::size_t i) { return chain::params[i]; }

  /// Backpropagates dL/d(output) of the last training-mode forward(); writes every
  /// parameter gradient (but those of a frozen prefix). Gradients are propagated only as
  /// far back as the first layer with parameters (and not frozen): nothing before it, and
  /// not to the network's input, is computed.
  void backward(const tensor& dy) {
    if (!input_)
      throw std::logic_error(name() + "::backward: no training-mode forward() to backpropagate through");
    const tensor& y = outputs_[N - 1];
    if (dy.data.rows() != y.data.rows() || dy.data.cols() != y.data.cols())
      throw shape_error(name() + "::backward: gradient is " + std::to_string(dy.data.rows()) + "x" +
                        std::to_string(dy.data.cols()) + ", the last output is " + std::to_string(y.data.rows()) +
                        "x" + std::to_string(y.data.cols()));
    if (frozen_ >= N) return;
    backward_step<N - 1>(*input_, dy, nullptr);
  }

  // ---- the layer contract, so that networks nest ------------------------------------
  void forward(const tensor& x, tensor& y, Mode mode) {
    forward(x, mode);
    y = outputs_[N - 1];
  }
  void backward(const tensor& x, const tensor&, const tensor& dy, tensor* dx) { backward_step<N - 1>(x, dy, dx); }

  template <class F>
  void for_each_parameter(F&& f) {
    std::apply([&](auto&... l) { (l.for_each_parameter(f), ...); }, layers_);
  }
  /// f(layer) for each layer, in order (nn::visit_layers recurses through it).
  template <class F>
  void for_each_child(F&& f) {
    std::apply([&](auto&... l) { (f(l), ...); }, layers_);
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
  /// Saves or restores every layer's state (io/archive.hpp), each in a scope named by its
  /// position and type ("3.Conv2d<32,64,5,1,2>").
  template <class Archive>
  void state(Archive& ar) {
    std::size_t i = 0;
    std::apply(
        [&](auto&... l) {
          ((void)[&] {
            auto scope = ar.scope(std::to_string(i++) + "." + l.name());
            if constexpr (requires { l.state(ar); }) l.state(ar);
          }(), ...);
        },
        layers_);
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

  // grads_[i] holds dL/d(outputs_[i]); layer I reads dL/d(its output) and writes dL/d(its
  // input) only when someone needs it: a layer with parameters before it, or the caller
  // (dx != nullptr, when this network is nested in another).
  // A frozen prefix (frozen_ > 0, only when no input gradient is asked for) ends the pass
  // at layer frozen_.
  template <std::size_t I>
  void backward_step(const tensor& x, const tensor& dy, tensor* dx) {
    if constexpr (I == 0) {
      std::get<0>(layers_).backward(x, outputs_[0], dy, dx);
    } else {
      const bool more = dx != nullptr || (chain::params_before(I) && params_from(frozen_, I));
      std::get<I>(layers_).backward(outputs_[I - 1], outputs_[I], dy, more ? &grads_[I - 1] : nullptr);
      if (more) backward_step<I - 1>(x, grads_[I - 1], dx);
    }
  }
  // Does a layer in [first, end) have parameters?
  static constexpr bool params_from(std::size_t first, std::size_t end) {
    for (std::size_t j = first; j < end; ++j)
      if (chain::params[j]) return true;
    return false;
  }

  std::tuple<Layers...> layers_;
  std::array<tensor, N> outputs_{};
  std::array<tensor, N> grads_{};
  const tensor* input_ = nullptr;
  std::size_t frozen_ = 0;
};

}  // namespace fasttrain::nn
