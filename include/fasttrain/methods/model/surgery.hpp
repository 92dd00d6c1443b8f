// fasttrain/methods/model/surgery.hpp -- model surgery at compile time: methods that change
// the network's structure (BlurPool, SqueezeExcite, GhostBatchNorm, Factorize) change its type.
//
//   using Net = nn::Sequential<...>;
//   using Fast = methods::model_for<Net, methods::BlurPool<>, methods::SqueezeExcite<>>;
//   Fast model;  model.reset_parameters(seed);
//   Trainer t{model, opt, loss, methods::BlurPool<>{}, methods::SqueezeExcite<>{}, methods::EMA{}};
//
// A surgery method M is a rule on layer types: `M::template apply<L>` is what layer L becomes
// (L itself when the rule does not touch it). model_for<Net, Ms...> applies each rule in turn to
// every layer nested in Net (through nn::Sequential and nn::Residual, body and shortcut), once
// per layer of the network as it was before that rule: what a rule inserts is not visited by the
// same rule again. The result derives from the rewritten network and records the rules applied
// (`surgery_applied`), so the Trainer can refuse a recipe whose surgery methods were not
// applied to its model (a static_assert that names model_for).
//
// A surgery method is also a method of the recipe, with no events: it is listed in the Trainer
// for its tag and traits, and costs nothing at run time. Checkpoints of a surgered model hold
// the new layers' parameters (their scopes are named by the new types).
#pragma once

#include <type_traits>

#include "fasttrain/nn/residual.hpp"
#include "fasttrain/nn/sequential.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

namespace detail {
template <class L, class Rule>
struct rewrite {
  using type = typename Rule::template apply<L>;
};
template <class... Ls, class Rule>
struct rewrite<nn::Sequential<Ls...>, Rule> {
  using type = nn::Sequential<typename rewrite<Ls, Rule>::type...>;
};
template <class Body, class Shortcut, class Rule>
struct rewrite<nn::Residual<Body, Shortcut>, Rule> {
  using type = nn::Residual<typename rewrite<Body, Rule>::type, typename rewrite<Shortcut, Rule>::type>;
};

template <class Net, class... Rules>
struct rewrite_all {
  using type = Net;
};
template <class Net, class Rule, class... Rules>
struct rewrite_all<Net, Rule, Rules...> {
  using type = typename rewrite_all<typename rewrite<Net, Rule>::type, Rules...>::type;
};

template <class M>
concept surgery_method = requires {
  { M::surgery } -> std::convertible_to<bool>;
} && M::surgery;

template <class M, bool Ok>
struct surgery_check {
  static_assert(Ok, "fasttrain::methods::model_for: every listed method must be a surgery method "
                    "(static constexpr bool surgery = true, template <class L> using apply = ...); "
                    "see surgery_check<Method, false> above");
  static constexpr bool ok = true;
};
}  // namespace detail

/// Net with the rules of surgery methods Ms applied, in order.
template <class Net, class... Ms>
class Surgered : public detail::rewrite_all<Net, Ms...>::type {
  static_assert((detail::surgery_check<Ms, detail::surgery_method<Ms>>::ok && ...));

 public:
  using base_network = typename detail::rewrite_all<Net, Ms...>::type;
  using original_network = Net;
  using surgery_applied = type_list<Ms...>;
  using base_network::base_network;
  Surgered() = default;
};

namespace detail {
template <class S, class M, bool = surgery_method<M>>
struct append_rule {
  using type = S;
};
template <class Net, class... Applied, class M>
struct append_rule<Surgered<Net, Applied...>, M, true> {
  using type = Surgered<Net, Applied..., M>;
};
template <class S, class... Ms>
struct fold_rules {
  using type = S;
};
template <class S, class M, class... Ms>
struct fold_rules<S, M, Ms...> {
  using type = typename fold_rules<typename append_rule<S, M>::type, Ms...>::type;
};
}  // namespace detail

/// model_for<Net, Ms...>: Net rewritten by the surgery methods among Ms, in their order. The
/// other methods of a recipe may be listed too and are ignored here, so a whole recipe can be
/// passed.
template <class Net, class... Ms>
using model_for = typename detail::fold_rules<Surgered<Net>, Ms...>::type;

}  // namespace fasttrain::methods
