// Compile-fail: MixedPrecision needs 16-bit products, which only gpu::thrust has; on
// cpu::eigen the Trainer refuses it with a static_assert naming the supported backend.
// The same recipe on gpu::thrust (here on Thrust's CPU device system) compiles.
#include <fasttrain/fasttrain.hpp>
#include <fasttrain/tensor/thrust.hpp>

#include "common.hpp"

int main() {
#ifdef FASTTRAIN_CF_FAIL
  return cf::run(fasttrain::methods::MixedPrecision{});
#else
  using namespace fasttrain;
  using B = gpu::thrust;
  nn::Sequential<nn::Linear<4, 3>>::rebind<B> net;
  Trainer t(net, optim::BasicSGD<B>{}, nn::BasicSoftmaxCrossEntropy<B>{}, methods::MixedPrecision{});
  return t.model().parameter_names().size() == 2 ? 0 : 1;
#endif
}
