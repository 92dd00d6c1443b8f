// fasttrain/eval/stats.hpp -- the statistics of a study: medians with distribution-free
// confidence intervals over seeds, time to a target read off a run's curve, Pareto frontiers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/train/result.hpp"

namespace fasttrain::eval {

inline constexpr double never = std::numeric_limits<double>::infinity();

/// A median with a confidence interval over seeds.
struct Interval {
  double median = never;
  double low = never, high = never;
  double coverage = 0;  ///< the interval's actual coverage probability (0.75 for 3 seeds)
  int n = 0;            ///< values it was computed from (runs that never reached count as +inf)
  bool finite() const { return std::isfinite(median); }
};

/// The median of `xs` and the distribution-free interval [x_(k), x_(n+1-k)] around it: the
/// order-statistic interval for the median, with the largest k whose coverage
/// 1 - 2 P(Binomial(n, 1/2) <= k-1) is at least `level`; with too few values for `level`, k = 1
/// (the range) and `coverage` says what it is (3 seeds: 75%; 5 seeds: 93.75%). No normality is
/// assumed, and +inf values (a run that never reached its target) are ordered last, so the
/// median is +inf when most runs never reached it.
inline Interval median_interval(std::vector<double> xs, double level = 0.95) {
  fasttrain::detail::require(level > 0 && level < 1, "eval::median_interval: level must be in (0, 1), got ", level);
  Interval r;
  r.n = static_cast<int>(xs.size());
  if (xs.empty()) return r;
  for (double x : xs) fasttrain::detail::require(!std::isnan(x), "eval::median_interval: a value is NaN");
  std::sort(xs.begin(), xs.end());
  const auto n = xs.size();
  r.median = n % 2 ? xs[n / 2] : (std::isinf(xs[n / 2]) ? never : 0.5 * (xs[n / 2 - 1] + xs[n / 2]));
  // P(Bin(n, 1/2) <= j) for j = 0..n
  std::vector<double> cdf(n + 1);
  double c = 1, acc = 0;  // c = C(n, j)
  for (std::size_t j = 0; j <= n; ++j) {
    if (j > 0) c = c * static_cast<double>(n - j + 1) / static_cast<double>(j);
    acc += c * std::pow(0.5, static_cast<double>(n));
    cdf[j] = acc;
  }
  std::size_t k = 1;
  for (std::size_t kk = 1; kk <= (n + 1) / 2; ++kk)
    if (1 - 2 * cdf[kk - 1] >= level) k = kk;
  r.low = xs[k - 1];
  r.high = xs[n - k];
  r.coverage = n >= 2 ? 1 - 2 * cdf[k - 1] : 0;
  return r;
}

/// Training seconds at the first evaluation of `history` with accuracy >= q; `never` if none.
inline double time_to(const std::vector<EvalRecord>& history, double q) {
  for (const auto& h : history)
    if (h.test_accuracy >= q) return h.train_seconds;
  return never;
}
/// Epochs of training at that evaluation (fractional when evaluations fall within epochs;
/// records without fractional epochs count their completed epochs); `never` if none.
inline double epochs_to(const std::vector<EvalRecord>& history, double q) {
  for (const auto& h : history)
    if (h.test_accuracy >= q) return h.epochs > 0 ? h.epochs : static_cast<double>(h.epoch);
  return never;
}

struct Point {
  double seconds = 0;
  double accuracy = 0;
};

/// The points not dominated by another (no other is at least as fast and at least as
/// accurate, and better in one), sorted by time: a staircase rising with time.
inline std::vector<Point> pareto_frontier(std::vector<Point> pts) {
  std::sort(pts.begin(), pts.end(), [](const Point& a, const Point& b) {
    return a.seconds < b.seconds || (a.seconds == b.seconds && a.accuracy > b.accuracy);
  });
  std::vector<Point> out;
  for (const auto& p : pts)
    if (out.empty() || p.accuracy > out.back().accuracy) out.push_back(p);
  return out;
}

}  // namespace fasttrain::eval
