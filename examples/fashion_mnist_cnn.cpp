// fashion_mnist_cnn -- conv5x5(32)-pool-conv5x5(64)-pool-fc1024-fc10 on Fashion-MNIST
// (the dataset's published reference network, 0.916 test accuracy), SGD + Nesterov with a
// cosine schedule.
//
//   fashion_mnist_cnn [--epochs 12] [--seed 1] [--threads 2] [--batch 128] [--lr 0.02] [--warmup 0.5] [--data DIR]
//                     [--label-smoothing S] [--clip-norm T] [--target ACC]
//
// Ends with one JSON line of results.
#include "example_main.hpp"

#include "models.hpp"

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<examples::CNN>(
      "fashion_mnist_cnn", "Trains the two-layer CNN on Fashion-MNIST with SGD + Nesterov.",
      {.epochs = examples::cnn_epochs,
       .lr = examples::cnn_lr,
       .weight_decay = examples::cnn_weight_decay,
       .warmup_epochs = examples::cnn_warmup_epochs},
      argc, argv);
}
