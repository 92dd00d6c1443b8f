// bench_cnn_methods -- the Fashion-MNIST CNN example (same model, data, defaults and JSON
// line as examples/fashion_mnist_cnn) with one method or recipe chosen by --method, for
// measuring each method's effect on time to a target accuracy (benchmarks/cnn_methods.sh).
//
//   bench_cnn_methods --method M [method flags] [--target 0.91] [--seed S] [every flag of the example]
//   M and its flags: benchmarks/method_flags.hpp (--help lists them).
#include "../examples/example_main.hpp"
#include "../examples/models.hpp"
#include "method_flags.hpp"

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<examples::CNN>(
      "bench_cnn_methods", "The Fashion-MNIST CNN with one method, for time-to-accuracy measurements.",
      {.epochs = examples::cnn_epochs,
       .lr = examples::cnn_lr,
       .weight_decay = examples::cnn_weight_decay,
       .warmup_epochs = examples::cnn_warmup_epochs},
      argc, argv, bench::MethodFlags{});
}
