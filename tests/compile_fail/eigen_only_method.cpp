// Compile-fail: a method that declares `eigen_only` (its hooks use Eigen expressions on the
// batch) in a recipe whose model is on another backend (gpu::thrust, here on Thrust's CPU
// device system) is refused with a static_assert; the library's own methods all run on every
// backend (GradientClipping is accepted).
#include <fasttrain/fasttrain.hpp>
#include <fasttrain/tensor/thrust.hpp>

struct EigenOnlyFlip {  // a user's method written for cpu::eigen only
  static constexpr fasttrain::taxonomy tag{fasttrain::component::data, fasttrain::action::replace};
  static constexpr bool eigen_only = true;
  using events = fasttrain::events<fasttrain::event::before_forward>;
  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    ctx.batch.inputs.data.colwise().reverseInPlace();
  }
};

int main() {
  using namespace fasttrain;
  using B = gpu::thrust;
  nn::Sequential<nn::Linear<4, 3>>::rebind<B> net;
#ifdef FASTTRAIN_CF_FAIL
  Trainer t(net, optim::BasicSGD<B>{}, nn::BasicSoftmaxCrossEntropy<B>{}, EigenOnlyFlip{});
#else
  Trainer t(net, optim::BasicSGD<B>{}, nn::BasicSoftmaxCrossEntropy<B>{}, methods::GradientClipping::by_norm(1.f));
#endif
  return t.model().parameter_names().size() == 2 ? 0 : 1;
}
