// benchmarks/method_flags.hpp -- the method chooser of bench_cnn_methods and
// bench_resnet_methods: --method picks one method (with its defaults unless a flag below says
// otherwise) or a named recipe; each choice is its own Trainer type, composed at compile time,
// and surgery methods give their own network type (examples/example_main.hpp's run builds
// methods::model_for<Model, Methods...>).
#pragma once

#include <memory>
#include <string>
#include <tuple>

#include <fasttrain/core/cli.hpp>
#include <fasttrain/fasttrain.hpp>
#include <fasttrain/recipes/recipes.hpp>

namespace bench {

inline constexpr const char* method_names =
    "none, mixup, cutmix, cutout, selective_backprop, data_pruning, progressive_resizing, curriculum, "
    "rand_augment, data_echoing, ema, stochastic_depth, layer_freezing, magnitude_pruning, blurpool, "
    "ghost_batchnorm, squeeze_excite, factorize, sam, swa, lookahead, batch_size_warmup, lars, lamb (these two "
    "replace SGD; --opt-lr, --opt-weight-decay), mild, medium or hot";

struct MethodFlags {
  std::shared_ptr<std::string> method;
  std::shared_ptr<float> alpha, length, keep, sb_start, prune, scale, magnitude, cstart, drop_rate, sparsity,
      rho, bsw_initial;
  std::shared_ptr<int> echo, sam_interval;
  std::shared_ptr<double> ema_half_life, freeze_start, bsw_warmup;
  std::shared_ptr<float> opt_lr, opt_wd;
  std::shared_ptr<std::string> bsw_lr;
  void add_flags(fasttrain::cli::Args& args) {
    using namespace fasttrain::methods;
    method = args.add<std::string>("method", "none", method_names);
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
    drop_rate = args.add<float>("drop-rate", StochasticDepthOptions{}.drop_rate, "StochasticDepth: deepest block's rate");
    freeze_start = args.add<double>("freeze-start", LayerFreezingOptions{}.start, "LayerFreezing: start (fraction)");
    sparsity = args.add<float>("sparsity", MagnitudePruningOptions{}.target_sparsity, "MagnitudePruning: target");
    rho = args.add<float>("rho", SAMOptions{}.rho, "SAM: neighbourhood radius");
    sam_interval = args.add<int>("sam-interval", 1, "SAM: a SAM step every this many steps");
    bsw_initial = args.add<float>("bsw-initial", BatchSizeWarmupOptions{}.initial,
                                  "BatchSizeWarmup: first batch size, fraction of --batch");
    bsw_warmup = args.add<double>("bsw-warmup", BatchSizeWarmupOptions{}.warmup.value,
                                  "BatchSizeWarmup: growth period, fraction of the budget");
    bsw_lr = args.add<std::string>("bsw-lr-scaling", "none", "BatchSizeWarmup: none, linear or sqrt");
    opt_wd = args.add<float>("opt-weight-decay", -1.f,
                             "LARS / LAMB: weight decay (-1: LARS 5e-4, coupled; LAMB its default 0.01)");
    opt_lr = args.add<float>("opt-lr", 0.f, "LARS / LAMB: base learning rate (0: LARS 1, LAMB 0.005)");
  }
  fasttrain::methods::BatchSizeWarmup batch_size_warmup() const {
    using fasttrain::methods::BatchSizeWarmup;
    const auto& s = *bsw_lr;
    const auto scaling = s == "linear" ? BatchSizeWarmup::LRScaling::linear
                         : s == "sqrt" ? BatchSizeWarmup::LRScaling::sqrt
                         : s == "none" ? BatchSizeWarmup::LRScaling::none
                                       : throw fasttrain::config_error("--bsw-lr-scaling must be none, linear or sqrt, got '" + s + "'");
    return BatchSizeWarmup{{.initial = *bsw_initial,
                            .warmup = fasttrain::Duration{*bsw_warmup, fasttrain::Unit::dur},
                            .lr_scaling = scaling}};
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
    if (m == "stochastic_depth") return run(methods::StochasticDepth{{.drop_rate = *drop_rate}});
    if (m == "layer_freezing") return run(methods::LayerFreezing{{.start = *freeze_start}});
    if (m == "magnitude_pruning") return run(methods::MagnitudePruning{{.target_sparsity = *sparsity}});
    if (m == "blurpool") return run(methods::BlurPool<>{});
    if (m == "ghost_batchnorm") return run(methods::GhostBatchNorm<>{});
    if (m == "squeeze_excite") return run(methods::SqueezeExcite<32, 8>{});
    if (m == "factorize") return run(methods::Factorize<>{});
    if (m == "sam") return run(methods::SAM{{.rho = *rho, .interval = *sam_interval}});
    if (m == "swa") return run(methods::SWA{});
    if (m == "lookahead") return run(methods::Lookahead{});
    if (m == "batch_size_warmup") return run(batch_size_warmup());
    if (m == "lars")
      return run(methods::LARS{{.lr = *opt_lr > 0 ? *opt_lr : 1.f, .weight_decay = *opt_wd >= 0 ? *opt_wd : 5e-4f}});
    if (m == "lamb")
      return run(methods::LAMB{{.lr = *opt_lr > 0 ? *opt_lr : 5e-3f,
                                .weight_decay = *opt_wd >= 0 ? *opt_wd : methods::LAMBOptions{}.weight_decay}});
    if (m == "mild") return std::apply(run, recipes::mild());
    if (m == "medium") return std::apply(run, recipes::medium());
    if (m == "hot") return std::apply(run, recipes::hot());
    throw config_error(std::string("--method must be ") + method_names + ", got '" + m + "'");
  }
  void describe(fasttrain::Result& r) const {
    using fasttrain::json::number;
    r.extra.push_back({"method", fasttrain::json::quote(*method)});
    r.extra.push_back({"alpha", number(*alpha)});
    r.extra.push_back({"cutout_length", number(*length)});
    r.extra.push_back({"keep", number(*keep)});
    r.extra.push_back({"sb_start", number(*sb_start)});
    r.extra.push_back({"prune_fraction", number(*prune)});
    r.extra.push_back({"initial_scale", number(*scale)});
    r.extra.push_back({"magnitude", number(*magnitude)});
    r.extra.push_back({"curriculum_start", number(*cstart)});
    r.extra.push_back({"echo_factor", number(*echo)});
    r.extra.push_back({"ema_half_life", number(*ema_half_life)});
    r.extra.push_back({"drop_rate", number(*drop_rate)});
    r.extra.push_back({"freeze_start", number(*freeze_start)});
    r.extra.push_back({"sparsity", number(*sparsity)});
    r.extra.push_back({"rho", number(*rho)});
    r.extra.push_back({"sam_interval", number(*sam_interval)});
    r.extra.push_back({"bsw_initial", number(*bsw_initial)});
    r.extra.push_back({"bsw_warmup", number(*bsw_warmup)});
    r.extra.push_back({"bsw_lr_scaling", fasttrain::json::quote(*bsw_lr)});
    r.extra.push_back({"opt_lr", number(*opt_lr)});
    r.extra.push_back({"opt_weight_decay", number(*opt_wd)});
  }
};

}  // namespace bench
