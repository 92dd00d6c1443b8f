// Compile-fail: a Conv2d whose input channels differ from what the layer before produces.
#include <fasttrain/nn/nn.hpp>

using namespace fasttrain;
#ifdef FASTTRAIN_CF_FAIL
using Net = nn::Sequential<nn::Conv2d<1, 32, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>, nn::Conv2d<16, 64, 5, 1, 2>>;
#else
using Net = nn::Sequential<nn::Conv2d<1, 32, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>, nn::Conv2d<32, 64, 5, 1, 2>>;
#endif

int main() {
  Net net;
  return static_cast<int>(net.parameter_count() == 0);
}
