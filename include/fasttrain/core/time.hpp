// fasttrain/core/time.hpp -- Duration (an amount of training) and Time (where training is).
//
//   using namespace fasttrain::literals;
//   Duration d = 5_ep;      // five epochs          (also 100_ba, 6400_sp, 30_sec, 0.7_dur)
//   time.ratio(2_ep)        // how many times 2 epochs have elapsed, as a real number
//   time.fraction()         // elapsed fraction of the whole training budget, in [0, 1]
//
// Schedules and methods are stateless functions of Time, so a recipe written with
// `dur` stretches to any budget unchanged.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "fasttrain/core/error.hpp"

namespace fasttrain {

enum class Unit { epoch, batch, sample, second, dur };

inline const char* unit_suffix(Unit u) {
  switch (u) {
    case Unit::epoch: return "ep";
    case Unit::batch: return "ba";
    case Unit::sample: return "sp";
    case Unit::second: return "sec";
    case Unit::dur: return "dur";
  }
  return "?";
}

/// An amount of training in one unit. `dur` is a fraction of the whole budget.
struct Duration {
  double value = 0.0;
  Unit unit = Unit::epoch;

  constexpr Duration() = default;
  constexpr Duration(double v, Unit u) : value(v), unit(u) {}

  std::string str() const {
    std::string v = std::to_string(value);
    while (v.size() > 1 && v.back() == '0') v.pop_back();
    if (!v.empty() && v.back() == '.') v.pop_back();
    return v + unit_suffix(unit);
  }
  friend constexpr bool operator==(const Duration&, const Duration&) = default;
};

namespace literals {
constexpr Duration operator""_ep(unsigned long long v) { return {double(v), Unit::epoch}; }
constexpr Duration operator""_ep(long double v) { return {double(v), Unit::epoch}; }
constexpr Duration operator""_ba(unsigned long long v) { return {double(v), Unit::batch}; }
constexpr Duration operator""_sp(unsigned long long v) { return {double(v), Unit::sample}; }
constexpr Duration operator""_sec(unsigned long long v) { return {double(v), Unit::second}; }
constexpr Duration operator""_sec(long double v) { return {double(v), Unit::second}; }
constexpr Duration operator""_dur(long double v) { return {double(v), Unit::dur}; }
constexpr Duration operator""_dur(unsigned long long v) { return {double(v), Unit::dur}; }
}  // namespace literals

/// Where training is now, and the budget it runs to.
struct Time {
  // Progress. `batch` counts optimizer steps taken so far (Composer's meaning).
  std::int64_t epoch = 0;           ///< completed epochs
  std::int64_t batch = 0;           ///< optimizer steps taken
  std::int64_t batch_in_epoch = 0;  ///< batches drawn in the current epoch (= steps, unless batches repeat)
  std::int64_t sample = 0;          ///< training samples drawn from the data (a repeated batch adds none)
  double seconds = 0.0;             ///< training wall-clock so far (evaluation excluded)

  // Budget.
  std::int64_t batches_per_epoch = 1;  ///< of the current epoch (a method may set its length)
  std::int64_t samples_per_epoch = 1;
  Duration max_duration{1.0, Unit::epoch};

  /// Elapsed time measured in unit `u` (epochs are fractional: 2.5 = halfway through the third).
  double in(Unit u) const {
    switch (u) {
      case Unit::epoch:
        return static_cast<double>(epoch) +
               static_cast<double>(batch_in_epoch) / static_cast<double>(batches_per_epoch);
      case Unit::batch: return static_cast<double>(batch);
      case Unit::sample: return static_cast<double>(sample);
      case Unit::second: return seconds;
      case Unit::dur: return fraction();
    }
    return 0.0;
  }

  /// Elapsed time as a multiple of `d` (0.5 = halfway through d).
  double ratio(Duration d) const { return d.value > 0 ? in(d.unit) / d.value : 1.0; }

  /// Has at least `d` elapsed?
  bool reached(Duration d) const { return in(d.unit) >= d.value; }

  /// Elapsed fraction of the training budget, clamped to [0, 1].
  double fraction() const {
    const double f = max_duration.value > 0 ? in(max_duration.unit) / max_duration.value : 1.0;
    return f < 0 ? 0.0 : (f > 1 ? 1.0 : f);
  }

  /// The budget in optimizer steps; exact for epoch/batch/sample budgets, -1 for seconds.
  std::int64_t total_batches() const {
    switch (max_duration.unit) {
      case Unit::epoch:
        return static_cast<std::int64_t>(std::ceil(max_duration.value * batches_per_epoch));
      case Unit::batch: return static_cast<std::int64_t>(std::ceil(max_duration.value));
      case Unit::sample:
        return static_cast<std::int64_t>(std::ceil(max_duration.value * batches_per_epoch /
                                                   static_cast<double>(samples_per_epoch)));
      default: return -1;
    }
  }
};

}  // namespace fasttrain
