// bench_cnn_methods -- the Fashion-MNIST CNN example (same model, data, defaults and JSON
// line as examples/fashion_mnist_cnn) with one data method chosen by --method, for measuring
// each method's effect on time to a target accuracy (benchmarks/cnn_methods.sh).
//
//   bench_cnn_methods --method none|mixup|cutmix|cutout [--alpha A] [--cutout-length L]
//                     [--target 0.91] [--seed S] [every flag of the example]
#include <memory>
#include <string>

#include "../examples/example_main.hpp"
#include "../examples/models.hpp"

namespace {
struct DataMethodFlags {
  std::shared_ptr<std::string> method;
  std::shared_ptr<float> alpha, length;
  void add_flags(fasttrain::cli::Args& args) {
    method = args.add<std::string>("method", "none", "none, mixup, cutmix or cutout");
    alpha = args.add<float>("alpha", 0.f, "MixUp / CutMix alpha (0: the method's default)");
    length = args.add<float>("cutout-length", 0.5f, "CutOut square side, fraction of the image side");
  }
  template <class Run>
  fasttrain::Result run(Run&& run) const {
    using namespace fasttrain;
    if (*method == "none") return run();
    if (*method == "mixup") return run(methods::MixUp{{.alpha = *alpha > 0 ? *alpha : methods::MixUpOptions{}.alpha}});
    if (*method == "cutmix") return run(methods::CutMix{{.alpha = *alpha > 0 ? *alpha : methods::CutMixOptions{}.alpha}});
    if (*method == "cutout") return run(methods::CutOut{{.length = *length}});
    throw config_error("bench_cnn_methods: --method must be none, mixup, cutmix or cutout, got '" + *method + "'");
  }
  void describe(fasttrain::Result& r) const {
    r.extra.push_back({"method", fasttrain::json::quote(*method)});
    r.extra.push_back({"alpha", fasttrain::json::number(*alpha)});
    r.extra.push_back({"cutout_length", fasttrain::json::number(*length)});
  }
};
}  // namespace

int main(int argc, char** argv) {
  return examples::train_fashion_mnist<examples::CNN>(
      "bench_cnn_methods", "The Fashion-MNIST CNN with one data method, for time-to-accuracy measurements.",
      {.epochs = examples::cnn_epochs,
       .lr = examples::cnn_lr,
       .weight_decay = examples::cnn_weight_decay,
       .warmup_epochs = examples::cnn_warmup_epochs},
      argc, argv, DataMethodFlags{});
}
