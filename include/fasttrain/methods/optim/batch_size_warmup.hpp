// fasttrain/methods/optim/batch_size_warmup.hpp -- BatchSizeWarmup (optimization / reorder).
//
// Starts training with small batches and grows them to the data source's batch size B over
// the first `warmup` of the budget (batch-size warmup, as in GPT-3, Brown et al. 2020, §B;
// McCandlish et al. 2018, "An Empirical Model of Large-Batch Training", arXiv:1812.06162,
// explains why: early in training the gradient noise scale is small, so small batches make
// as much progress per sample in more, cheaper steps). Every epoch is still one pass over
// the data; only how it is cut into steps changes.
//
//   data::Loader loader(train, {.batch_size = 128});
//   Trainer t{model, opt, loss, methods::BatchSizeWarmup{{.initial = 0.25f, .warmup = 0.3_dur}}};
//
// The batch size is set per epoch, at epoch_begin, from the fraction of the warmup elapsed
// when the epoch starts (t = time.ratio(warmup), in [0, 1]):
//   b = B * (initial + (1 - initial) * t), rounded to a multiple of `multiple`, in [1, B]
// so with a 10-epoch budget and the defaults the epochs use 32, 64, 96, then 128 samples.
// With `lr_scaling` the step's learning rate is multiplied by b / B (linear, Goyal et al.
// 2017) or sqrt(b / B); the default leaves it alone, so a small batch takes a full step.
//
// Needs a data source that can change its batch size (data::Loader): the Trainer refuses
// others with a config_error naming the method. Time.batches_per_epoch then follows the
// epoch's batch size, so budgets and schedules in epochs, samples or `dur` keep their
// meaning; a budget in batches (`ba`) counts the extra small steps.
//
// Hooks: epoch_begin (sets the epoch's batch size through ctx.data), before_step (scales the
// learning rate when lr_scaling is not none).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct BatchSizeWarmupOptions {
  enum class LRScaling { none, linear, sqrt };
  float initial = 0.25f;                    ///< the first epoch's batch size, as a fraction of B, in (0, 1]
  Duration warmup{0.3, Unit::dur};          ///< how long the batch size grows (ep, sp or dur)
  std::int64_t multiple = 8;                ///< batch sizes are multiples of this (or B itself)
  LRScaling lr_scaling = LRScaling::none;   ///< the learning rate's multiplier for a batch of b
};

class BatchSizeWarmup {
 public:
  using Options = BatchSizeWarmupOptions;
  using LRScaling = Options::LRScaling;
  static constexpr taxonomy tag{component::optimization, action::reorder};
  using events = fasttrain::events<event::epoch_begin, event::before_step>;

  explicit BatchSizeWarmup(Options o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::BatchSizeWarmup: ";
    require(opt_.initial > 0 && opt_.initial <= 1, who, "initial must be in (0, 1] (a fraction of the batch size), got ",
            opt_.initial);
    require(opt_.warmup.value >= 0 && std::isfinite(opt_.warmup.value), who, "warmup must be >= 0, got ",
            opt_.warmup.str());
    require(opt_.warmup.unit != Unit::batch && opt_.warmup.unit != Unit::second, who,
            "warmup must be in ep, sp or dur (the batch size decides how many batches an epoch has), got ",
            opt_.warmup.str());
    require(opt_.warmup.unit != Unit::dur || opt_.warmup.value <= 1, who, "a warmup in dur must be <= 1, got ",
            opt_.warmup.str());
    require(opt_.multiple >= 1, who, "multiple must be >= 1, got ", opt_.multiple);
  }
  static std::string name() { return "BatchSizeWarmup"; }
  const Options& options() const { return opt_; }

  /// The batch size at warmup fraction t in [0, 1], for a source batch size `full`.
  std::int64_t batch_size_at(double t, std::int64_t full) const {
    t = std::clamp(t, 0.0, 1.0);
    const double want = static_cast<double>(full) * (opt_.initial + (1.0 - opt_.initial) * t);
    const auto m = static_cast<double>(opt_.multiple);
    const auto b = static_cast<std::int64_t>(std::llround(want / m)) * opt_.multiple;
    return std::clamp<std::int64_t>(b, std::min(opt_.multiple, full), full);
  }
  /// The current epoch's batch size (0 before the first epoch_begin).
  std::int64_t batch_size() const { return current_; }
  /// The learning-rate multiplier lr_scaling gives a batch of b out of `full`.
  double lr_factor(std::int64_t b, std::int64_t full) const {
    const double r = static_cast<double>(b) / static_cast<double>(full);
    switch (opt_.lr_scaling) {
      case LRScaling::linear: return r;
      case LRScaling::sqrt: return std::sqrt(r);
      case LRScaling::none: break;
    }
    return 1.0;
  }

  void reset() { current_ = full_ = 0; }

  template <class Ctx>
  void on_epoch_begin(Ctx& ctx) {
    if (!ctx.data || ctx.data->batch_size() < 1)
      throw config_error(
          "fasttrain::methods::BatchSizeWarmup: the data source does not say its batch size (use data::Loader)");
    if (!ctx.data->can_resize())
      throw config_error(
          "fasttrain::methods::BatchSizeWarmup: the data source cannot change its batch size per epoch "
          "(use data::Loader)");
    full_ = ctx.data->batch_size();
    current_ = batch_size_at(ctx.time.ratio(opt_.warmup), full_);
    ctx.data->set_epoch_batch_size(current_);
  }

  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    if (opt_.lr_scaling != LRScaling::none && full_ > 0)
      ctx.lr_multiplier *= static_cast<float>(lr_factor(current_, full_));
  }

  /// Saves or restores the hyperparameters (checked on restore) and the current epoch's
  /// batch size, which a run resumed mid-epoch needs for its learning-rate scaling.
  template <class Archive>
  void state(Archive& ar) {
    ar.config("initial", opt_.initial);
    ar.config("warmup", opt_.warmup.value);
    ar.config("warmup_unit", opt_.warmup.unit);
    ar.config("multiple", opt_.multiple);
    ar.config("lr_scaling", opt_.lr_scaling);
    ar("current", current_);
    ar("full", full_);
    if constexpr (!Archive::saving)
      if (current_ < 0 || full_ < 0 || current_ > full_)
        ar.invalid(fasttrain::detail::cat("BatchSizeWarmup's batch size ", current_, " is outside [0, ", full_, "]"));
  }

 private:
  Options opt_;
  std::int64_t current_ = 0;  // this epoch's batch size
  std::int64_t full_ = 0;     // the source's batch size
};

}  // namespace fasttrain::methods
