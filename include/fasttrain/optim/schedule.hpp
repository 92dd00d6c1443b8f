// fasttrain/optim/schedule.hpp -- learning-rate schedules as stateless functions of Time.
//
// A schedule returns a multiplier of the optimizer's base learning rate. It holds no
// state, so resuming, re-running or stretching training to a new budget needs nothing
// but the Time. Schedules compose by multiplication:
//
//   using namespace fasttrain::literals;
//   auto s = schedule::linear_warmup(1_ep) * schedule::cosine();   // warmup, then cosine decay
//   float m = s(time);                                             // in [0, 1]
//
// Durations in any unit work: `1_ep`, `500_ba`, `0.05_dur` (a fraction of the budget).
#pragma once

#include <cmath>
#include <concepts>
#include <utility>
#include <numbers>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"

namespace fasttrain::schedule {

/// Multiplier 1 throughout.
struct constant {
  float operator()(const Time&) const { return 1.f; }
};

/// gamma^k after k whole `every` durations: step(30_ep, 0.1f).
struct step {
  Duration every;
  float gamma = 0.1f;
  step(Duration every_, float gamma_ = 0.1f) : every(every_), gamma(gamma_) {
    fasttrain::detail::require(every.value > 0, "fasttrain::schedule::step: `every` must be positive, got ", every.str());
    fasttrain::detail::require(gamma > 0 && gamma <= 1, "fasttrain::schedule::step: gamma must be in (0, 1], got ", gamma);
  }
  float operator()(const Time& t) const {
    return std::pow(gamma, static_cast<float>(std::floor(t.ratio(every))));
  }
};

/// Cosine decay from 1 at the start to `alpha_f` at the end of the budget.
struct cosine {
  float alpha_f = 0.f;
  explicit cosine(float alpha_f_ = 0.f) : alpha_f(alpha_f_) {
    fasttrain::detail::require(alpha_f >= 0 && alpha_f <= 1, "fasttrain::schedule::cosine: alpha_f must be in [0, 1], got ",
                    alpha_f);
  }
  float operator()(const Time& t) const {
    const double f = t.fraction();
    return static_cast<float>(alpha_f + (1.0 - alpha_f) * 0.5 * (1.0 + std::cos(std::numbers::pi * f)));
  }
};

/// Linear ramp from `start` to 1 over `duration`, then 1.
struct linear_warmup {
  Duration duration;
  float start = 0.f;
  linear_warmup(Duration d, float start_ = 0.f) : duration(d), start(start_) {
    fasttrain::detail::require(d.value > 0, "fasttrain::schedule::linear_warmup: duration must be positive, got ", d.str());
    fasttrain::detail::require(start >= 0 && start <= 1, "fasttrain::schedule::linear_warmup: start must be in [0, 1], got ",
                    start);
  }
  float operator()(const Time& t) const {
    const double r = t.ratio(duration);
    return r >= 1.0 ? 1.f : static_cast<float>(start + (1.0 - start) * r);
  }
};

/// Smith's one-cycle policy (cosine-annealed both ways, as PyTorch's OneCycleLR):
/// from 1/div_factor up to 1 over the first `pct_start` of the budget, then down to
/// 1/(div_factor * final_div_factor) at the end.
struct one_cycle {
  float pct_start = 0.3f;
  float div_factor = 25.f;
  float final_div_factor = 1e4f;
  explicit one_cycle(float pct_start_ = 0.3f, float div_factor_ = 25.f, float final_div_factor_ = 1e4f)
      : pct_start(pct_start_), div_factor(div_factor_), final_div_factor(final_div_factor_) {
    fasttrain::detail::require(pct_start > 0 && pct_start < 1, "fasttrain::schedule::one_cycle: pct_start must be in (0, 1), got ",
                    pct_start);
    fasttrain::detail::require(div_factor >= 1 && final_div_factor >= 1,
                    "fasttrain::schedule::one_cycle: div_factor and final_div_factor must be >= 1");
  }
  float operator()(const Time& t) const {
    const double f = t.fraction();
    const double lo = 1.0 / div_factor, end = lo / final_div_factor;
    auto anneal = [](double a, double b, double x) { return b + (a - b) * 0.5 * (1.0 + std::cos(std::numbers::pi * x)); };
    if (f < pct_start) return static_cast<float>(anneal(lo, 1.0, f / pct_start));
    return static_cast<float>(anneal(1.0, end, (f - pct_start) / (1.0 - pct_start)));
  }
};

/// The product of two schedules (see operator*).
template <class A, class B>
struct product {
  A a;
  B b;
  float operator()(const Time& t) const { return a(t) * b(t); }
};

template <class S>
concept Schedule = requires(const S& s, const Time& t) {
  { s(t) } -> std::convertible_to<float>;
};

template <Schedule A, Schedule B>
product<A, B> operator*(A a, B b) {
  return {std::move(a), std::move(b)};
}

}  // namespace fasttrain::schedule
