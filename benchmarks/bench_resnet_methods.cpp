// bench_resnet_methods -- the Fashion-MNIST ResNet example (same model, data, defaults and
// JSON line as examples/fashion_mnist_resnet) with one method or recipe chosen by --method,
// for measuring time to a target accuracy (benchmarks/cnn_methods.sh with BENCH=resnet).
//
//   bench_resnet_methods --method M [method flags] [--target 0.91] [--seed S] [every flag of the example]
//   M and its flags: benchmarks/method_flags.hpp (--help lists them).
#include "../examples/example_main.hpp"
#include "../examples/models.hpp"
#include "method_flags.hpp"

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<examples::ResNet>(
      "bench_resnet_methods", "The Fashion-MNIST ResNet with one method or recipe, for time-to-accuracy measurements.",
      {.epochs = examples::resnet_epochs,
       .lr = examples::resnet_lr,
       .weight_decay = examples::resnet_weight_decay,
       .warmup_epochs = examples::resnet_warmup_epochs},
      argc, argv, bench::MethodFlags{});
}
