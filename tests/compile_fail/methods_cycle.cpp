// Compile-fail: ordering traits that no order satisfies.
#include "common.hpp"

struct B;
struct A {
  static constexpr fasttrain::taxonomy tag{fasttrain::component::data, fasttrain::action::reorder};
  using events = fasttrain::events<>;
  using runs_before = fasttrain::type_list<B>;
};
struct B {
  static constexpr fasttrain::taxonomy tag{fasttrain::component::data, fasttrain::action::reorder};
  using events = fasttrain::events<>;
#ifdef FASTTRAIN_CF_FAIL
  using runs_before = fasttrain::type_list<A>;
#endif
};

int main() { return cf::run(A{}, B{}); }
