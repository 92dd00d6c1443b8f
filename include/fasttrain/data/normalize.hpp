// fasttrain/data/normalize.hpp -- standardise features to zero mean and unit variance.
//
//   const auto norm = data::Normalizer::fit(train);        // one global mean / stddev
//   // or data::Normalizer::fit(train, /*per_feature=*/true) for one per feature
//   norm.apply(train);
//   norm.apply(test);                                      // always the training statistics
//
// Statistics are accumulated in double precision (two passes: mean, then variance) and
// use the population variance. A stddev below 1e-6 is floored to 1e-6, so a constant
// feature (an always-black MNIST border pixel) maps to 0 instead of dividing by zero.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/data/dataset.hpp"

namespace fasttrain::data {

struct Normalizer {
  /// Smallest stddev divided by.
  static constexpr float min_stddev = 1e-6f;

  cpu::eigen::matrix mean;    ///< (sample size) x 1 per feature, or 1 x 1 global
  cpu::eigen::matrix stddev;  ///< same shape as mean, already floored at min_stddev

  /// Fits the statistics of `ds` (a global mean / stddev over every value, or one per feature
  /// row when `per_feature`). Throws data_error for an empty dataset.
  static Normalizer fit(const Dataset& ds, bool per_feature = false) {
    const std::string who = ds.name.empty() ? std::string("<unnamed dataset>") : ds.name;
    const Eigen::Index rows = ds.features.rows(), cols = ds.features.cols();
    if (rows == 0 || cols == 0) throw data_error(who, "cannot fit a Normalizer on an empty dataset");
    const float* x = ds.features.data();
    Normalizer n;
    if (per_feature) {
      std::vector<double> sum(static_cast<std::size_t>(rows), 0.0), sq(static_cast<std::size_t>(rows), 0.0);
      for (Eigen::Index j = 0; j < cols; ++j) {
        const float* c = x + j * rows;
        for (Eigen::Index i = 0; i < rows; ++i) sum[static_cast<std::size_t>(i)] += c[i];
      }
      for (auto& s : sum) s /= static_cast<double>(cols);
      for (Eigen::Index j = 0; j < cols; ++j) {
        const float* c = x + j * rows;
        for (Eigen::Index i = 0; i < rows; ++i) {
          const double d = c[i] - sum[static_cast<std::size_t>(i)];
          sq[static_cast<std::size_t>(i)] += d * d;
        }
      }
      n.mean.resize(rows, 1);
      n.stddev.resize(rows, 1);
      for (Eigen::Index i = 0; i < rows; ++i) {
        const auto k = static_cast<std::size_t>(i);
        n.mean(i, 0) = static_cast<float>(sum[k]);
        n.stddev(i, 0) = std::max(static_cast<float>(std::sqrt(sq[k] / static_cast<double>(cols))), min_stddev);
      }
    } else {
      const Eigen::Index total = rows * cols;
      double sum = 0.0;
      for (Eigen::Index i = 0; i < total; ++i) sum += x[i];
      const double m = sum / static_cast<double>(total);
      double sq = 0.0;
      for (Eigen::Index i = 0; i < total; ++i) {
        const double d = x[i] - m;
        sq += d * d;
      }
      n.mean.setConstant(1, 1, static_cast<float>(m));
      n.stddev.setConstant(1, 1, std::max(static_cast<float>(std::sqrt(sq / static_cast<double>(total))), min_stddev));
    }
    return n;
  }

  /// True when the statistics are global (1 x 1) rather than per feature.
  bool global() const { return mean.rows() == 1 && mean.cols() == 1; }

  /// features = (features - mean) / stddev, in place. Throws config_error when not fitted,
  /// shape_error when per-feature statistics do not match the dataset's sample size.
  void apply(Dataset& ds) const {
    fasttrain::detail::require(mean.size() > 0 && mean.cols() == 1 && stddev.rows() == mean.rows() &&
                                   stddev.cols() == 1,
                               "data::Normalizer::apply: not fitted (call Normalizer::fit on the training set)");
    if (!global() && mean.rows() != ds.features.rows())
      throw shape_error(fasttrain::detail::cat(
          "data::Normalizer::apply: fitted on ", static_cast<std::int64_t>(mean.rows()), " features per sample but ",
          ds.name.empty() ? std::string("the dataset") : ds.name, " has ", static_cast<std::int64_t>(ds.features.rows()),
          " (sample shape ", ds.sample_shape.str(), ")"));
    if (global()) {
      const float m = mean(0, 0), s = std::max(stddev(0, 0), min_stddev);
      ds.features.array() = (ds.features.array() - m) / s;
    } else {
      const auto m = mean.col(0).array();
      const Eigen::ArrayXf s = stddev.col(0).array().max(min_stddev);
      ds.features.array().colwise() -= m;
      ds.features.array().colwise() /= s;
    }
  }
};

}  // namespace fasttrain::data
