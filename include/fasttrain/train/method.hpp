// fasttrain/train/method.hpp -- what makes a type a method: its taxonomy tag, the events
// it handles, and its composition traits.
//
//   struct MyMethod {
//     static constexpr fasttrain::taxonomy tag{fasttrain::component::data, fasttrain::action::replace};
//     using events = fasttrain::events<fasttrain::event::before_forward>;
//     using runs_before = fasttrain::type_list<>;      // optional: methods that must run after this one
//     using runs_after = fasttrain::type_list<>;       // optional: methods that must run before this one
//     using conflicts_with = fasttrain::type_list<>;   // optional: methods that must not be combined with it
//     static constexpr bool runs_last = false;        // optional: true = after every method without it
//     void on_before_forward(auto& ctx);
//   };
//
// The taxonomy is the survey's (Bartoldson, Kailkhura, Blalock 2022): five actions on
// three components of training.
#pragma once

#include <concepts>
#include <type_traits>

#include "fasttrain/train/events.hpp"

namespace fasttrain {

/// `none` tags infrastructure that is not a speedup method (methods::Checkpoint).
enum class component { data, model, optimization, none };
enum class action { remove, restrict, reorder, replace, retrofit };

struct taxonomy {
  component comp;
  action act;
};

inline constexpr const char* component_name(component c) {
  switch (c) {
    case component::data: return "data";
    case component::model: return "model";
    case component::optimization: return "optimization";
    case component::none: return "none";
  }
  return "?";
}
inline constexpr const char* action_name(action a) {
  switch (a) {
    case action::remove: return "remove";
    case action::restrict: return "restrict";
    case action::reorder: return "reorder";
    case action::replace: return "replace";
    case action::retrofit: return "retrofit";
  }
  return "?";
}

template <class... Ts>
struct type_list {};

namespace detail {
template <class T, class List>
struct in_list : std::false_type {};
template <class T, class... Ts>
struct in_list<T, type_list<Ts...>> : std::bool_constant<(std::is_same_v<T, Ts> || ...)> {};

template <class M>
struct traits_of {
  static constexpr auto get_before() {
    if constexpr (requires { typename M::runs_before; }) return typename M::runs_before{};
    else return type_list<>{};
  }
  static constexpr auto get_after() {
    if constexpr (requires { typename M::runs_after; }) return typename M::runs_after{};
    else return type_list<>{};
  }
  static constexpr auto get_conflicts() {
    if constexpr (requires { typename M::conflicts_with; }) return typename M::conflicts_with{};
    else return type_list<>{};
  }
  using runs_before = decltype(get_before());
  using runs_after = decltype(get_after());
  using conflicts_with = decltype(get_conflicts());
};
}  // namespace detail

/// A method: tagged with the taxonomy and declaring its events.
template <class M>
concept Method = requires {
  { M::tag } -> std::convertible_to<taxonomy>;
  typename M::events;
};

}  // namespace fasttrain
