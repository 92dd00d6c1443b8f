// Compile-fail: two methods that declare each other as conflicting.
#include "common.hpp"

struct B;
struct A {
  static constexpr fasttrain::taxonomy tag{fasttrain::component::data, fasttrain::action::replace};
  using events = fasttrain::events<>;
#ifdef FASTTRAIN_CF_FAIL
  using conflicts_with = fasttrain::type_list<B>;
#endif
};
struct B {
  static constexpr fasttrain::taxonomy tag{fasttrain::component::data, fasttrain::action::replace};
  using events = fasttrain::events<>;
};

int main() { return cf::run(A{}, B{}); }
