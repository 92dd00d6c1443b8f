// Compile-fail: MixUp and CutMix both replace the targets by a mix of two samples' targets;
// stacking them would silently mix four samples, so CutMix declares the conflict.
#include "common.hpp"

int main() {
#ifdef FASTTRAIN_CF_FAIL
  return cf::run(fasttrain::methods::MixUp{}, fasttrain::methods::CutMix{});
#else
  return cf::run(fasttrain::methods::MixUp{}, fasttrain::methods::LabelSmoothing{0.1f});
#endif
}
