// fasttrain/train/compose.hpp -- compile-time composition of a recipe's methods.
//
// Given the methods of a recipe, in the order the user listed them:
//  * every method must be tagged and declare its events (the Method concept);
//  * no method may appear in another's `conflicts_with` (a static_assert names both);
//  * the methods are ordered so that each runs before those in its `runs_before` and
//    after those in its `runs_after`, and a method with `static constexpr bool runs_last =
//    true` after every method without it (methods::Checkpoint: its batch_end saves what the
//    other hooks have left): a stable topological sort (ties keep the user's order), with a
//    static_assert when the constraints form a cycle.
#pragma once

#include <array>
#include <cstddef>
#include <tuple>
#include <utility>

#include "fasttrain/train/method.hpp"

namespace fasttrain::detail {

/// Instantiated only for a conflicting pair; the compiler shows both types.
template <class First, class Second>
struct conflict_report {
  static constexpr bool ok = false;
};
template <class First, class Second, bool Conflict>
struct check_conflict {
  static_assert(!Conflict,
                "fasttrain::Trainer: two methods in this recipe conflict and must not be combined "
                "(First declares Second in its conflicts_with; see check_conflict<First, Second, true> above)");
  static constexpr bool ok = true;
};

template <class... Ms>
struct composition {
  static constexpr std::size_t N = sizeof...(Ms);
  template <std::size_t I>
  using at = std::tuple_element_t<I, std::tuple<Ms...>>;

  template <class M>
  static constexpr bool last() {
    if constexpr (requires { M::runs_last; }) return M::runs_last;
    else return false;
  }
  template <std::size_t I, std::size_t J>
  static constexpr bool precedes() {
    if constexpr (I == J) return false;
    else
      return in_list<at<J>, typename traits_of<at<I>>::runs_before>::value ||
             in_list<at<I>, typename traits_of<at<J>>::runs_after>::value || (!last<at<I>>() && last<at<J>>());
  }
  template <std::size_t I, std::size_t J>
  static constexpr bool conflicts() {
    if constexpr (I == J) return false;
    else return in_list<at<J>, typename traits_of<at<I>>::conflicts_with>::value;
  }

  template <std::size_t I, std::size_t... J>
  static constexpr bool check_row(std::index_sequence<J...>) {
    if constexpr (sizeof...(J) == 0) return true;
    else return (check_conflict<at<I>, at<J>, conflicts<I, J>()>::ok && ...);
  }
  template <std::size_t... I>
  static constexpr bool check_all(std::index_sequence<I...>) {
    return (check_row<I>(std::make_index_sequence<N>{}) && ... && true);
  }
  static constexpr bool no_conflicts = check_all(std::make_index_sequence<N>{});

  struct order_result {
    std::array<std::size_t, N> order{};
    bool acyclic = true;
  };
  template <std::size_t I, std::size_t... J>
  static constexpr void fill_row(std::array<std::array<bool, N>, N>& e, std::index_sequence<J...>) {
    ((e[I][J] = precedes<I, J>()), ...);
  }
  template <std::size_t... I>
  static constexpr std::array<std::array<bool, N>, N> edges(std::index_sequence<I...>) {
    std::array<std::array<bool, N>, N> e{};
    (fill_row<I>(e, std::make_index_sequence<N>{}), ...);
    return e;
  }
  static constexpr order_result sort() {
    order_result r;
    if constexpr (N > 0) {
      const auto e = edges(std::make_index_sequence<N>{});
      std::array<bool, N> placed{};
      for (std::size_t k = 0; k < N; ++k) {
        std::size_t pick = N;
        for (std::size_t j = 0; j < N && pick == N; ++j) {
          if (placed[j]) continue;
          bool ready = true;
          for (std::size_t i = 0; i < N; ++i)
            if (!placed[i] && e[i][j]) ready = false;
          if (ready) pick = j;
        }
        if (pick == N) {
          r.acyclic = false;
          return r;
        }
        placed[pick] = true;
        r.order[k] = pick;
      }
    }
    return r;
  }
  static constexpr order_result sorted = sort();
  static_assert(sorted.acyclic,
                "fasttrain::Trainer: the runs_before / runs_after traits of this recipe's methods form a cycle; "
                "no order satisfies them all");

  template <std::size_t... K>
  static auto sorted_tuple_type(std::index_sequence<K...>) -> std::tuple<at<sorted.order[K]>...>;
  using sorted_tuple = decltype(sorted_tuple_type(std::make_index_sequence<N>{}));
  /// Position of the user's I-th method in the sorted tuple.
  static constexpr std::size_t position_of(std::size_t i) {
    for (std::size_t k = 0; k < N; ++k)
      if (sorted.order[k] == i) return k;
    return N;
  }
};

}  // namespace fasttrain::detail
