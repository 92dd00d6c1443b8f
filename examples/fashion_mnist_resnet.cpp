// fashion_mnist_resnet -- a small residual network with BatchNorm on Fashion-MNIST: the base
// model for the speedup methods (stochastic depth, BlurPool, ...). Three stages of one
// basic block each (16, 32, 64 channels at 28x28, 14x14, 7x7), global average pooling and
// a linear classifier: about 0.08 M parameters, 16 M multiply-adds per image.
//
//   fashion_mnist_resnet [--epochs 10] [--seed 1] [--threads 2] [--batch 128] [--lr 0.05] [--data DIR]
//
// Ends with one JSON line of results.
#include "example_main.hpp"

using namespace fasttrain;

// conv3x3 - BN - ReLU - conv3x3 - BN, added to the input, then ReLU.
template <std::int64_t C>
using Basic = nn::Residual<nn::Sequential<nn::Conv2d<C, C, 3, 1, 1>, nn::BatchNorm2d<C>, nn::ReLU,
                                          nn::Conv2d<C, C, 3, 1, 1>, nn::BatchNorm2d<C>>>;
// The same with stride 2 and twice the channels; a 1x1 stride-2 projection on the shortcut.
template <std::int64_t C>
using Down = nn::Residual<nn::Sequential<nn::Conv2d<C, 2 * C, 3, 2, 1>, nn::BatchNorm2d<2 * C>, nn::ReLU,
                                         nn::Conv2d<2 * C, 2 * C, 3, 1, 1>, nn::BatchNorm2d<2 * C>>,
                          nn::Sequential<nn::Conv2d<C, 2 * C, 1, 2, 0>, nn::BatchNorm2d<2 * C>>>;

using ResNet = nn::Sequential<nn::Conv2d<1, 16, 3, 1, 1>, nn::BatchNorm2d<16>, nn::ReLU,  // stem, 28x28
                              Basic<16>, nn::ReLU,                                        // stage 1, 28x28
                              Down<16>, nn::ReLU,                                         // stage 2, 14x14
                              Down<32>, nn::ReLU,                                         // stage 3, 7x7
                              nn::GlobalAvgPool, nn::Linear<64, 10>>;

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<ResNet>(
      "fashion_mnist_resnet", "Trains a small residual network with BatchNorm on Fashion-MNIST.",
      {.epochs = 10, .lr = 0.05f, .weight_decay = 5e-5f, .warmup_epochs = 0.5}, argc, argv);
}
