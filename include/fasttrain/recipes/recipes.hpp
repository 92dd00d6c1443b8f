// fasttrain/recipes/recipes.hpp -- named recipes: method lists chosen for the Fashion-MNIST
// ResNet (examples::ResNet, examples/fashion_mnist_resnet.cpp), in the spirit of Composer's
// ResNet-50 mild / medium / hot recipes, from cheapest to strongest regularisation.
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
// baseline, is in docs/recipes.md.
#pragma once

#include <tuple>

#include "fasttrain/methods/data/mixup.hpp"
#include "fasttrain/methods/model/stochastic_depth.hpp"
#include "fasttrain/methods/model/surgery.hpp"
#include "fasttrain/methods/optim/ema.hpp"
#include "fasttrain/methods/optim/label_smoothing.hpp"
#include "fasttrain/methods/optim/sam.hpp"

namespace fasttrain::recipes {

/// mild: what costs (almost) nothing per step. EMA with a half-life suited to a short run
/// (200 steps, about half an epoch at batch 128), label smoothing 0.1.
inline auto mild() {
  return std::tuple{methods::EMA{{.half_life = Duration{200.0, Unit::batch}}}, methods::LabelSmoothing{0.1f}};
}

/// medium: mild, plus stochastic depth (drop rate 0.1 at the deepest block, linear) and SAM
/// every 10th step (rho 0.05): about 10% more forward and backward work from SAM, a few % less
/// from the dropped blocks.
inline auto medium() {
  return std::tuple_cat(mild(), std::tuple{methods::StochasticDepth{{.drop_rate = 0.1f}},
                                           methods::SAM{{.rho = 0.05f, .interval = 10}}});
}

/// hot: medium, plus MixUp (alpha 0.2) and SAM every 5th step: the strongest regularisation,
/// meant for longer budgets.
inline auto hot() {
  return std::tuple{methods::EMA{{.half_life = Duration{200.0, Unit::batch}}}, methods::LabelSmoothing{0.1f},
                    methods::StochasticDepth{{.drop_rate = 0.1f}}, methods::SAM{{.rho = 0.05f, .interval = 5}},
                    methods::MixUp{{.alpha = 0.2f}}};
}

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
