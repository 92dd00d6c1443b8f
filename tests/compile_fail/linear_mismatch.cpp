// Compile-fail: two consecutive Linear layers whose sizes do not fit.
// Built twice: without FASTTRAIN_CF_FAIL it must compile (the harness works); with it,
// the build must fail with Sequential's static_assert message.
#include <fasttrain/nn/nn.hpp>

using namespace fasttrain;
#ifdef FASTTRAIN_CF_FAIL
using Net = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<128, 10>>;
#else
using Net = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 10>>;
#endif

int main() {
  Net net;
  return static_cast<int>(net.parameter_count() == 0);
}
