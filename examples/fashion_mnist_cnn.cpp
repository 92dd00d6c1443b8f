// fashion_mnist_cnn -- conv5x5(32)-pool-conv5x5(64)-pool-fc1024-fc10 on Fashion-MNIST
// (the dataset's published reference network, 0.916 test accuracy), SGD + Nesterov with a
// cosine schedule.
//
//   fashion_mnist_cnn [--epochs 12] [--seed 1] [--threads 2] [--batch 128] [--lr 0.02] [--warmup 0.5] [--data DIR]
//                     [--label-smoothing S] [--clip-norm T] [--target ACC]
//
// Ends with one JSON line of results.
#include "example_main.hpp"

using namespace fasttrain;

using CNN = nn::Sequential<nn::Conv2d<1, 32, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>,   // 28x28x1 -> 14x14x32
                           nn::Conv2d<32, 64, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>,  // -> 7x7x64
                           nn::Linear<64 * 7 * 7, 1024>, nn::ReLU,                   // a 7x7x64 sample is 3136 features
                           nn::Linear<1024, 10>>;

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<CNN>(
      "fashion_mnist_cnn", "Trains the two-layer CNN on Fashion-MNIST with SGD + Nesterov.",
      {.epochs = 12, .lr = 0.02f, .weight_decay = 5e-5f, .warmup_epochs = 0.5}, argc, argv);
}
