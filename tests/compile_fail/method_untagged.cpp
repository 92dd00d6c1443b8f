// Compile-fail: a method without a taxonomy tag.
#include "common.hpp"

struct Untagged {
#ifndef FASTTRAIN_CF_FAIL
  static constexpr fasttrain::taxonomy tag{fasttrain::component::data, fasttrain::action::remove};
#endif
  using events = fasttrain::events<>;
};

int main() { return cf::run(Untagged{}); }
