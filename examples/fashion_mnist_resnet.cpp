// fashion_mnist_resnet -- a small residual network with BatchNorm on Fashion-MNIST: the base
// model for the model methods (StochasticDepth, BlurPool, ...) and the named recipes.
// examples::ResNet (examples/models.hpp): three stages of one basic block each (16, 32, 64
// channels at 28x28, 14x14, 7x7), global average pooling and a linear classifier: about
// 0.08 M parameters, 16 M multiply-adds per image.
//
//   fashion_mnist_resnet [--epochs 10] [--seed 1] [--threads 2] [--batch 128] [--lr 0.05] [--data DIR]
//
// Ends with one JSON line of results.
#include "example_main.hpp"
#include "models.hpp"

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<examples::ResNet>(
      "fashion_mnist_resnet", "Trains a small residual network with BatchNorm on Fashion-MNIST.",
      {.epochs = examples::resnet_epochs,
       .lr = examples::resnet_lr,
       .weight_decay = examples::resnet_weight_decay,
       .warmup_epochs = examples::resnet_warmup_epochs},
      argc, argv);
}
