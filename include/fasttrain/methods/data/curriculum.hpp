// fasttrain/methods/data/curriculum.hpp -- Curriculum (data / reorder).
//
// Draws batches from the easiest examples first and lets harder ones in as training goes
// on, following a pacing function (Hacohen and Weinshall 2019, "On The Power of Curriculum
// Learning in Training Deep Networks", arXiv:1904.03626; pacing functions as in Wu, Dyer
// and Neyshabur 2021, "When Do Curricula Work?", arXiv:2012.03107). Each batch is drawn
// uniformly, without replacement, from the easiest g(t) * N examples, where t is the elapsed
// fraction of the training budget and
//   g(t) = start + (1 - start) * pace((t - t0) / (full_at - t0)),  clamped to [start, 1],
// t0 being the fraction at which the curriculum begins; pace(x) is x (linear), x^2
// (quadratic: stays easy longer), sqrt(x) (root: opens up fast) or floor(4x)/4 (step).
// Once g reaches 1, epochs are ordinary shuffled passes (the source's own order).
//
//   Trainer t{model, opt, loss, methods::Curriculum{{.start = 0.2f, .full_at = 0.5f}}};
//
// Difficulty: `scores` given per training example (lower = easier; e.g. el2n_scores of a
// trained model, Hacohen's "transfer" scoring), or, when empty, EL2N of the model being
// trained at the start of epoch `score_epoch` (self-paced; epochs before it are ordinary).
//
// Hook: epoch_begin (scores if needed, then sets the epoch's order through
// ctx.data->set_epoch_order). Needs a source that can draw a given order (data::Loader).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/methods/data/data_pruning.hpp"
#include "fasttrain/methods/data/scoring.hpp"
#include "fasttrain/train/context.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

enum class Pacing { linear, quadratic, root, step };

struct CurriculumOptions {
  Pacing pacing = Pacing::linear;
  float start = 0.2f;    ///< fraction of the examples (the easiest) available when the curriculum begins, in (0, 1]
  float full_at = 0.5f;  ///< fraction of the training budget at which every example is available, in (0, 1]
  std::vector<float> scores{};    ///< difficulty per training example (lower = easier); empty: EL2N
  std::int64_t score_epoch = 1;   ///< with no `scores`: epochs in ordinary order before scoring
  std::int64_t chunk = 512;       ///< samples per forward of the EL2N pass
  std::uint64_t seed = 0;         ///< draws the batches
};

class Curriculum {
 public:
  static constexpr taxonomy tag{component::data, action::reorder};
  using events = fasttrain::events<event::epoch_begin>;
  using conflicts_with = type_list<DataPruning>;

  explicit Curriculum(CurriculumOptions o = {}) : opt_(std::move(o)) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::Curriculum: ";
    require(opt_.start > 0.f && opt_.start <= 1.f, who, "start must be in (0, 1], got ", opt_.start);
    require(opt_.full_at > 0.f && opt_.full_at <= 1.f, who, "full_at must be in (0, 1], got ", opt_.full_at);
    require(opt_.score_epoch >= 0, who, "score_epoch must be >= 0, got ", opt_.score_epoch);
    require(opt_.chunk >= 1, who, "chunk must be >= 1, got ", opt_.chunk);
    for (std::size_t i = 0; i < opt_.scores.size(); ++i)
      require(std::isfinite(opt_.scores[i]), who, "scores[", i, "] is ", opt_.scores[i], ", not finite");
  }
  static std::string name() { return "Curriculum"; }
  const CurriculumOptions& options() const { return opt_; }

  /// The fraction of the examples available at budget fraction `t` when the curriculum
  /// began at `t0`.
  double available(double t, double t0) const {
    if (t0 >= opt_.full_at || t >= opt_.full_at) return 1.0;
    const double x = std::clamp((t - t0) / (opt_.full_at - t0), 0.0, 1.0);
    double p = x;
    switch (opt_.pacing) {
      case Pacing::linear: p = x; break;
      case Pacing::quadratic: p = x * x; break;
      case Pacing::root: p = std::sqrt(x); break;
      case Pacing::step: p = std::floor(4.0 * x) / 4.0; break;
    }
    return std::clamp(opt_.start + (1.0 - opt_.start) * p, static_cast<double>(opt_.start), 1.0);
  }
  /// Dataset indices from the easiest to the hardest (empty before scoring).
  const std::vector<std::int64_t>& ranking() const { return rank_; }

  void reset() {
    rank_.clear();
    t0_ = -1.0;
  }

  template <class Ctx>
  void on_epoch_begin(Ctx& ctx) {
    const data::Dataset* ds = &detail::orderable_training_set(ctx, "Curriculum");
    const auto n = ds->size();
    if (!opt_.scores.empty() && static_cast<std::int64_t>(opt_.scores.size()) != n)
      throw config_error(fasttrain::detail::cat("fasttrain::methods::Curriculum: scores has ", opt_.scores.size(),
                                                " entries but the training set (", ds->name, ") has ", n, " examples"));
    if (rank_.empty()) {
      if (opt_.scores.empty() && ctx.time.epoch < opt_.score_epoch) return;
      rank_ = detail::easy_to_hard(opt_.scores.empty() ? el2n_scores(ctx.model, *ds, opt_.chunk) : opt_.scores);
      t0_ = ctx.time.fraction();
    }
    const double t_begin = ctx.time.fraction();
    if (available(t_begin, t0_) >= 1.0) return;  // an ordinary epoch

    const std::int64_t bs = ctx.data->batch_size() > 0 ? ctx.data->batch_size() : 128;
    const double per_batch = 1.0 / static_cast<double>(std::max<std::int64_t>(1, ctx.time.total_batches()));
    Rng rng = Rng::derive(opt_.seed, static_cast<std::uint64_t>(ctx.time.epoch));
    std::vector<std::int64_t> order;
    order.reserve(static_cast<std::size_t>(n));
    std::vector<std::int64_t> picked;
    for (std::int64_t b = 0; b * bs < n; ++b) {
      const std::int64_t count = std::min(bs, n - b * bs);
      const double g = available(t_begin + static_cast<double>(b) * per_batch, t0_);
      const auto avail = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(g * static_cast<double>(n) - 1e-6)),
                                                  count, n);
      // Floyd's algorithm: `count` distinct positions of [0, avail).
      picked.clear();
      for (std::int64_t j = avail - count; j < avail; ++j) {
        const auto r = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(j + 1)));
        picked.push_back(std::find(picked.begin(), picked.end(), r) == picked.end() ? r : j);
      }
      for (auto p : picked) order.push_back(rank_[static_cast<std::size_t>(p)]);
    }
    ctx.data->set_epoch_order(std::move(order));
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("pacing", opt_.pacing);
    ar.config("start", opt_.start);
    ar.config("full_at", opt_.full_at);
    ar.config("score_epoch", opt_.score_epoch);
    ar.config("seed", opt_.seed);
    ar.config("given_scores", static_cast<std::int64_t>(opt_.scores.size()));
    ar("ranking", rank_);
    ar("began_at", t0_);
  }

 private:
  CurriculumOptions opt_;
  std::vector<std::int64_t> rank_;
  double t0_ = -1.0;
};

}  // namespace fasttrain::methods
