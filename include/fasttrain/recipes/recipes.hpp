// fasttrain/recipes/recipes.hpp -- named recipes: method lists chosen for the Fashion-MNIST
// ResNet (examples::ResNet, examples/fashion_mnist_resnet.cpp) from per-method measurements on
// it, from the cheapest to the most regularised.
//
//   using Net = recipes::model_for<ResNet, decltype(recipes::medium())>;   // surgery, if any
//   Net model;  model.reset_parameters(seed);
//   Result r = std::apply([&](auto... m) {
//     Trainer t{model, opt, nn::SoftmaxCrossEntropy{}, m...};
//     return t.fit(loader, &test, fit_options, schedule);
//   }, recipes::medium());
//
// Each recipe is a function returning a std::tuple of configured methods, so a user can read,
// copy and change it. What each contains and why, and what each measured against the
// baseline, is in docs/recipes.md. BatchSizeWarmup needs a data::Loader as the data source.
#pragma once

#include <tuple>

#include "fasttrain/methods/model/blurpool.hpp"
#include "fasttrain/methods/model/surgery.hpp"
#include "fasttrain/methods/optim/batch_size_warmup.hpp"
#include "fasttrain/methods/optim/ema.hpp"
#include "fasttrain/methods/optim/label_smoothing.hpp"

namespace fasttrain::recipes {

/// mild: what costs nothing per sample. Batch-size warmup with its defaults (a quarter of the
/// loader's batch size first, the full size from 30% of the budget on; the learning rate is
/// not scaled).
inline auto mild() { return std::tuple{methods::BatchSizeWarmup{}}; }

/// medium: mild, plus EMA with a half-life suited to a short run (200 steps, about half an
/// epoch at batch 128) and label smoothing 0.1: a few % more work per step (EMA's update).
inline auto medium() {
  return std::tuple_cat(mild(), std::tuple{methods::EMA{{.half_life = Duration{200.0, Unit::batch}}},
                                           methods::LabelSmoothing{0.1f}});
}

/// hot: medium, plus BlurPool (anti-aliased downsampling; surgery, so the network's type
/// changes: use model_for): more accuracy per epoch for more work per sample.
inline auto hot() { return std::tuple_cat(medium(), std::tuple{methods::BlurPool<>{}}); }

namespace detail {
template <class Net, class Tuple>
struct model_for_tuple;
template <class Net, class... Ms>
struct model_for_tuple<Net, std::tuple<Ms...>> {
  using type = methods::model_for<Net, Ms...>;
};
}  // namespace detail

/// The network type a recipe (a tuple of methods, as returned by mild() etc.) makes of Net.
template <class Net, class Recipe>
using model_for = typename detail::model_for_tuple<Net, Recipe>::type;

}  // namespace fasttrain::recipes
