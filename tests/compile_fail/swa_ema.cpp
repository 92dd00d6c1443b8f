// Compile-fail: SWA and EMA both average the weights and put their average into the model;
// combined, each would average the other's output, so SWA declares the conflict.
#include "common.hpp"

int main() {
#ifdef FASTTRAIN_CF_FAIL
  return cf::run(fasttrain::methods::SWA{}, fasttrain::methods::EMA{});
#else
  return cf::run(fasttrain::methods::SWA{}, fasttrain::methods::Lookahead{});
#endif
}
