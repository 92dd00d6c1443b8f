// examples/example_main.hpp -- what the Fashion-MNIST examples share: flags, data,
// normalisation, the recipe chosen by flags, and the JSON line.
//
// Flags: --epochs --seed --threads --batch --lr --data --target --input-ms, and the methods the recipe
// chooser offers (by default --label-smoothing S, --clip-norm T). Each combination of methods
// is its own Trainer type, composed at compile time; a chooser is a type with
// add_flags(args), run(run) (calls run(methods...) for the chosen list and returns its
// Result) and describe(result) (adds its flags to the JSON line).
#pragma once

#include <cstdio>
#include <exception>
#include <fasttrain/core/cli.hpp>
#include <fasttrain/fasttrain.hpp>
#include <iostream>
#include <string>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

namespace examples {

struct Defaults {
  double epochs = 10;
  float lr = 0.05f;
  float weight_decay = 5e-5f;
  double warmup_epochs = 0;  ///< linear warmup before the cosine decay (0: none)
};

/// --label-smoothing S and --clip-norm T, in any combination.
struct OptimizationFlags {
  std::shared_ptr<float> smoothing, clip;
  void add_flags(fasttrain::cli::Args& args) {
    smoothing = args.add<float>("label-smoothing", 0.f, "LabelSmoothing strength (0: off)");
    clip = args.add<float>("clip-norm", 0.f, "GradientClipping by global norm (0: off)");
  }
  template <class Run>
  fasttrain::Result run(Run&& run) const {
    using namespace fasttrain;
    if (*smoothing > 0 && *clip > 0)
      return run(methods::LabelSmoothing{*smoothing}, methods::GradientClipping::by_norm(*clip));
    if (*smoothing > 0) return run(methods::LabelSmoothing{*smoothing});
    if (*clip > 0) return run(methods::GradientClipping::by_norm(*clip));
    return run();
  }
  void describe(fasttrain::Result& r) const {
    r.extra.push_back({"label_smoothing", fasttrain::json::number(*smoothing)});
    r.extra.push_back({"clip_norm", fasttrain::json::number(*clip)});
  }
};

/// A data::Loader behind a simulated input pipeline that delivers one batch every `ms`
/// milliseconds, in parallel with training (a single worker that starts on the next batch
/// when one is handed out): next() waits until `ms` have passed since the previous hand-out.
/// With ms = 0 it only forwards. For measuring methods in an input-bound regime
/// (DataEchoing); data in memory behind a prefetching Loader is never input-bound.
class PacedLoader {
 public:
  PacedLoader(fasttrain::data::Loader& inner, double ms) : inner_(inner), period_(ms) {}
  bool next(fasttrain::data::Batch<>& b) {
    if (period_.count() > 0) {
      const auto ready = handed_ + std::chrono::duration_cast<clock::duration>(period_);
      std::this_thread::sleep_until(ready);
    }
    const bool got = inner_.next(b);
    handed_ = clock::now();
    return got;
  }
  void start_epoch(std::int64_t e, std::int64_t first = 0) { inner_.start_epoch(e, first); }
  void start_epoch(std::int64_t e, std::int64_t first, std::vector<std::int64_t> order) {
    inner_.start_epoch(e, first, std::move(order));
  }
  void set_batch_size(std::int64_t b) { inner_.set_batch_size(b); }
  std::int64_t batches_per_epoch() const { return inner_.batches_per_epoch(); }
  std::int64_t samples_per_epoch() const { return inner_.samples_per_epoch(); }
  std::int64_t batches_in_epoch() const { return inner_.batches_in_epoch(); }
  std::int64_t samples_in_epoch() const { return inner_.samples_in_epoch(); }
  const fasttrain::data::Dataset& dataset() const { return inner_.dataset(); }
  const fasttrain::data::LoaderOptions& options() const { return inner_.options(); }

 private:
  using clock = std::chrono::steady_clock;
  fasttrain::data::Loader& inner_;
  std::chrono::duration<double, std::milli> period_;
  clock::time_point handed_ = clock::now();
};

/// An optimizer given where a method would be (methods::LARS, methods::LAMB): it steps a model.
template <class O, class Model>
concept is_optimizer = requires(O& o, Model& m) {
  typename O::options_type;
  o.step(m, 1.f);
};

template <class Model, class Recipes = OptimizationFlags>
int train_fashion_mnist(const char* name, const char* description, Defaults d, int argc, char** argv,
                        Recipes recipes = {}) try {
  using namespace fasttrain;
  cli::Args args(name, description);
  auto epochs = args.add<double>("epochs", d.epochs, "training epochs");
  auto seed = args.add<std::uint64_t>("seed", 1, "seed for initialisation and shuffling");
  auto threads = args.add<int>("threads", 2, "threads for the matrix products");
  auto batch = args.add<std::int64_t>("batch", 128, "minibatch size");
  auto lr = args.add<float>("lr", d.lr, "base learning rate");
  auto data_dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
  auto target = args.add<double>("target", 0.0, "stop at this test accuracy (0: train the full budget)");
  recipes.add_flags(args);
  auto warmup = args.add<double>("warmup", d.warmup_epochs, "epochs of linear LR warmup (0: none)");
  auto input_ms = args.add<double>("input-ms", 0.0,
                                   "simulate an input pipeline delivering one batch every this many ms (0: off)");
  args.parse(argc, argv);
  fasttrain::detail::require(*input_ms >= 0, "--input-ms must be >= 0");

  set_threads(*threads);
  auto [train, test] = data::fashion_mnist(*data_dir);
  const auto norm = data::Normalizer::fit(train);
  norm.apply(train);
  norm.apply(test);

  data::Loader data_loader(train, {.batch_size = *batch, .shuffle = true, .seed = *seed, .prefetch = 2});
  PacedLoader loader(data_loader, *input_ms);
  FitOptions opt;
  opt.max_duration = Duration{*epochs, Unit::epoch};
  opt.name = name;
  if (*target > 0) opt.target_accuracy = *target;

  fasttrain::detail::require(*warmup >= 0, "--warmup must be >= 0");
  // Linear warmup (when asked for) times cosine decay over the whole budget.
  auto lr_schedule = [w = *warmup, cos = schedule::cosine()](const Time& t) {
    const float ramp = w > 0 ? static_cast<float>(std::min(1.0, t.ratio(Duration{w, Unit::epoch}))) : 1.f;
    return ramp * cos(t);
  };
  // The network is Model rewritten by the recipe's surgery methods (BlurPool, Factorize, ...):
  // each recipe has its own model type. The optimizer is SGD (Nesterov momentum 0.9), unless
  // the chooser's list is a single optimizer-replacing method (LARS, LAMB): then that one.
  std::int64_t parameters = 0;
  auto fit_with = [&](auto optimizer, auto... methods) {
    methods::model_for<Model, decltype(methods)...> model;
    model.reset_parameters(*seed);
    parameters = model.parameter_count();
    Trainer trainer{model, std::move(optimizer), nn::SoftmaxCrossEntropy{}, methods...};
    return trainer.fit(loader, test, opt, lr_schedule);
  };
  auto run = [&](auto... methods) {
    if constexpr (sizeof...(methods) == 1 && (is_optimizer<decltype(methods), Model> && ...))
      return fit_with(methods...);
    else
      return fit_with(optim::SGD{{.lr = *lr, .momentum = 0.9f, .nesterov = true, .weight_decay = d.weight_decay}},
                      methods...);
  };
  Result r = recipes.run(run);
  recipes.describe(r);
  if (*input_ms > 0) r.extra.push_back({"input_ms", fasttrain::json::number(*input_ms)});
  r.extra.push_back({"threads", std::to_string(*threads)});
  r.extra.push_back({"batch", std::to_string(*batch)});
  r.extra.push_back({"seed", std::to_string(*seed)});
  r.extra.push_back({"parameters", std::to_string(parameters)});
  std::cout << r.json() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "%s: error: %s\n", name, e.what());
  return 1;
}

}  // namespace examples
