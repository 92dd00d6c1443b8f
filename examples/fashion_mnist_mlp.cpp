// fashion_mnist_mlp -- the main demo: a 784-256-128-10 MLP trained on Fashion-MNIST with
// SGD + Nesterov momentum and a cosine schedule, evaluated after every epoch.
//
//   fashion_mnist_mlp [--epochs 10] [--seed 1] [--threads 2] [--batch 128] [--data DIR]
//                     [--label-smoothing S] [--clip-norm T] [--target ACC]
//
// Prints progress on a terminal and ends with one JSON line of results.
#include "example_main.hpp"

using namespace fasttrain;

using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU,  //
                           nn::Linear<256, 128>, nn::ReLU,  //
                           nn::Linear<128, 10>>;

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<MLP>(
      "fashion_mnist_mlp", "Trains a 784-256-128-10 MLP on Fashion-MNIST with SGD + Nesterov.",
      {.epochs = 10, .lr = 0.05f, .weight_decay = 5e-5f}, argc, argv);
}
