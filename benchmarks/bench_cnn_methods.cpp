// bench_cnn_methods -- the Fashion-MNIST CNN example (same model, data, defaults and JSON
// line as examples/fashion_mnist_cnn) with one method chosen by --method, for measuring
// each method's effect on time to a target accuracy (benchmarks/cnn_methods.sh).
//
//   bench_cnn_methods --method M [--alpha A] [--cutout-length L] [--keep K] [--sb-start S] [--prune-fraction F]
//                     [--initial-scale S] [--magnitude M] [--curriculum-start C] [--echo-factor E] [--ema-half-life H]
//                     [--target 0.91] [--seed S] [every flag of the example]
//   M: none, mixup, cutmix, cutout, selective_backprop, data_pruning, progressive_resizing,
//      curriculum, rand_augment, data_echoing, ema (each with its defaults unless a flag says otherwise)
#include <memory>
#include <string>

#include "../examples/example_main.hpp"
#include "../examples/models.hpp"

namespace {
struct DataMethodFlags {
  std::shared_ptr<std::string> method;
  std::shared_ptr<float> alpha, length, keep, sb_start, prune, scale, magnitude, cstart;
  std::shared_ptr<int> echo;
  std::shared_ptr<double> ema_half_life;
  void add_flags(fasttrain::cli::Args& args) {
    using namespace fasttrain::methods;
    method = args.add<std::string>("method", "none",
                                   "none, mixup, cutmix, cutout, selective_backprop, data_pruning, "
                                   "progressive_resizing, curriculum, rand_augment, data_echoing or ema");
    alpha = args.add<float>("alpha", 0.f, "MixUp / CutMix alpha (0: the method's default)");
    length = args.add<float>("cutout-length", CutOutOptions{}.length, "CutOut square side, fraction of the image side");
    keep = args.add<float>("keep", SelectiveBackpropOptions{}.keep, "SelectiveBackprop: fraction of each batch kept");
    sb_start = args.add<float>("sb-start", SelectiveBackpropOptions{}.start,
                               "SelectiveBackprop: fraction of the budget at which selection starts");
    prune = args.add<float>("prune-fraction", DataPruningOptions{}.fraction, "DataPruning: fraction dropped");
    scale = args.add<float>("initial-scale", ProgressiveResizingOptions{}.initial_scale,
                            "ProgressiveResizing: initial image scale");
    magnitude = args.add<float>("magnitude", RandAugmentOptions{}.magnitude, "RandAugment magnitude (0-30)");
    cstart = args.add<float>("curriculum-start", CurriculumOptions{}.start,
                             "Curriculum: fraction of the examples available at first");
    echo = args.add<int>("echo-factor", DataEchoingOptions{}.factor, "DataEchoing: steps per batch");
    ema_half_life = args.add<double>("ema-half-life", EMAOptions{}.half_life.value, "EMA: half-life in steps");
  }
  template <class Run>
  fasttrain::Result run(Run&& run) const {
    using namespace fasttrain;
    const auto& m = *method;
    if (m == "none") return run();
    if (m == "mixup") return run(methods::MixUp{{.alpha = *alpha > 0 ? *alpha : methods::MixUpOptions{}.alpha}});
    if (m == "cutmix") return run(methods::CutMix{{.alpha = *alpha > 0 ? *alpha : methods::CutMixOptions{}.alpha}});
    if (m == "cutout") return run(methods::CutOut{{.length = *length}});
    if (m == "selective_backprop") return run(methods::SelectiveBackprop{{.start = *sb_start, .keep = *keep}});
    if (m == "data_pruning") return run(methods::DataPruning{{.fraction = *prune}});
    if (m == "progressive_resizing") return run(methods::ProgressiveResizing{{.initial_scale = *scale}});
    if (m == "curriculum") return run(methods::Curriculum{{.start = *cstart}});
    if (m == "rand_augment") return run(methods::RandAugment{{.magnitude = *magnitude}});
    if (m == "data_echoing") return run(methods::DataEchoing{{.factor = *echo}});
    if (m == "ema") return run(methods::EMA{{.half_life = Duration{*ema_half_life, Unit::batch}}});
    throw config_error("bench_cnn_methods: --method must be none, mixup, cutmix, cutout, selective_backprop, "
                       "data_pruning, progressive_resizing, curriculum, rand_augment, data_echoing or ema, got '" + m + "'");
  }
  void describe(fasttrain::Result& r) const {
    r.extra.push_back({"method", fasttrain::json::quote(*method)});
    r.extra.push_back({"alpha", fasttrain::json::number(*alpha)});
    r.extra.push_back({"cutout_length", fasttrain::json::number(*length)});
    r.extra.push_back({"keep", fasttrain::json::number(*keep)});
    r.extra.push_back({"sb_start", fasttrain::json::number(*sb_start)});
    r.extra.push_back({"prune_fraction", fasttrain::json::number(*prune)});
    r.extra.push_back({"initial_scale", fasttrain::json::number(*scale)});
    r.extra.push_back({"magnitude", fasttrain::json::number(*magnitude)});
    r.extra.push_back({"curriculum_start", fasttrain::json::number(*cstart)});
    r.extra.push_back({"echo_factor", fasttrain::json::number(*echo)});
    r.extra.push_back({"ema_half_life", fasttrain::json::number(*ema_half_life)});
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
