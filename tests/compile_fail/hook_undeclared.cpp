// Compile-fail: a method defines on_before_step but does not declare the event.
#include "common.hpp"

struct Undeclared {
  static constexpr fasttrain::taxonomy tag{fasttrain::component::optimization, fasttrain::action::restrict};
#ifdef FASTTRAIN_CF_FAIL
  using events = fasttrain::events<>;
#else
  using events = fasttrain::events<fasttrain::event::before_step>;
#endif
  template <class Ctx>
  void on_before_step(Ctx&) {}
};

int main() { return cf::run(Undeclared{}); }
