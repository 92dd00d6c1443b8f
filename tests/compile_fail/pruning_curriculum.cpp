// Compile-fail: DataPruning and Curriculum both choose which samples each epoch draws; stacked,
// the later one would silently replace the other's order, so they declare the conflict.
#include "common.hpp"

int main() {
#ifdef FASTTRAIN_CF_FAIL
  return cf::run(fasttrain::methods::DataPruning{}, fasttrain::methods::Curriculum{});
#else
  return cf::run(fasttrain::methods::DataPruning{}, fasttrain::methods::SelectiveBackprop{});
#endif
}
