// Compile-fail: a method declares before_loss but its hook cannot take the context.
#include "common.hpp"

struct Misdeclared {
  static constexpr fasttrain::taxonomy tag{fasttrain::component::optimization, fasttrain::action::replace};
  using events = fasttrain::events<fasttrain::event::before_loss>;
#ifdef FASTTRAIN_CF_FAIL
  void on_before_loss(int) {}  // wrong parameter: the Trainer must refuse to compile
#else
  template <class Ctx>
  void on_before_loss(Ctx&) {}
#endif
};

int main() { return cf::run(Misdeclared{}); }
