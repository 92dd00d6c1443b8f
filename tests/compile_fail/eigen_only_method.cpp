// Compile-fail: a method that keeps Eigen state (EMA) in a recipe whose model is on another
// backend (gpu::thrust, here on Thrust's CPU device system) is refused with a static_assert;
// a backend-generic method (GradientClipping) is accepted.
#include <fasttrain/fasttrain.hpp>
#include <fasttrain/tensor/thrust.hpp>

int main() {
  using namespace fasttrain;
  using B = gpu::thrust;
  nn::Sequential<nn::Linear<4, 3>>::rebind<B> net;
#ifdef FASTTRAIN_CF_FAIL
  Trainer t(net, optim::BasicSGD<B>{}, nn::BasicSoftmaxCrossEntropy<B>{}, methods::EMA{});
#else
  Trainer t(net, optim::BasicSGD<B>{}, nn::BasicSoftmaxCrossEntropy<B>{}, methods::GradientClipping::by_norm(1.f));
#endif
  return t.model().parameter_names().size() == 2 ? 0 : 1;
}
