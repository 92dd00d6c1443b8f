// fasttrain/methods/data/data_pruning.hpp -- DataPruning (data / remove).
//
// Scores every training example early in training and trains the rest of the run only on
// the hardest ones, dropping the easiest `fraction` (Paul et al. 2021, "Deep Learning on a
// Data Diet", arXiv:2107.07075 for EL2N; Toneva et al. 2019, arXiv:1812.05159 for
// forgetting counts). Every epoch from `score_epoch` on is a pass over the kept examples
// only, so it costs (1 - fraction) of a full one; a budget in epochs then means epochs of
// the pruned set.
//
//   Trainer t{model, opt, loss, methods::DataPruning{{.fraction = 0.3f}}};
//
// Scores (`score`):
//   el2n (default): || softmax(f(x)) - onehot(y) ||_2 from one forward pass over the training
//     set, in evaluation mode, at the start of epoch `score_epoch`. The pass runs inside
//     the epoch_begin hook, so it is counted in the run's training seconds.
//   forgetting: how often each example went from right to wrong in the training forward
//     passes of epochs [0, score_epoch) (free: no extra pass); examples never classified
//     correctly are the hardest. With few epochs most counts are 0 and the ranking is coarse.
// Unlike the paper (scores averaged over several runs), one run scores itself.
//
// Hooks: epoch_begin (scores once, then sets each epoch's order: the kept examples,
// shuffled per epoch, through ctx.data->set_epoch_order), after_forward (forgetting only).
// Needs a data source that can draw a given order (data::Loader).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"
#include "fasttrain/methods/data/fwd.hpp"
#include "fasttrain/methods/data/scoring.hpp"
#include "fasttrain/train/context.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

/// How DataPruning and Curriculum score examples.
enum class ExampleScore { el2n, forgetting };

struct DataPruningOptions {
  float fraction = 0.3f;                  ///< of the training set dropped (the easiest), in [0, 1)
  ExampleScore score = ExampleScore::el2n;
  std::int64_t score_epoch = 1;           ///< epochs on the whole set before scoring; pruned from then on
  std::int64_t chunk = 512;               ///< samples per forward of the EL2N pass
  std::uint64_t seed = 0;                 ///< shuffles the kept examples each epoch
};

class DataPruning {
 public:
  static constexpr taxonomy tag{component::data, action::remove};
  using events = fasttrain::events<event::epoch_begin, event::after_forward>;
  /// Both choose each epoch's samples: stacked, one would silently override the other.
  using conflicts_with = type_list<Curriculum>;

  explicit DataPruning(DataPruningOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::DataPruning: ";
    require(opt_.fraction >= 0.f && opt_.fraction < 1.f, who, "fraction must be in [0, 1), got ", opt_.fraction);
    require(opt_.score_epoch >= 0, who, "score_epoch must be >= 0, got ", opt_.score_epoch);
    require(opt_.score != ExampleScore::forgetting || opt_.score_epoch >= 1, who,
            "forgetting counts need score_epoch >= 1 (epochs to observe), got ", opt_.score_epoch);
    require(opt_.chunk >= 1, who, "chunk must be >= 1, got ", opt_.chunk);
  }
  static std::string name() { return "DataPruning"; }
  const DataPruningOptions& options() const { return opt_; }

  /// The kept dataset indices, ascending (empty before scoring).
  const std::vector<std::int64_t>& kept() const { return kept_; }
  /// The scores the kept set was chosen by (empty before scoring).
  const std::vector<float>& scores() const { return scores_; }

  void reset() {
    kept_.clear();
    scores_.clear();
    forgetting_.resize(0);
  }

  template <class Ctx>
  void on_epoch_begin(Ctx& ctx) {
    const data::Dataset* ds = &detail::orderable_training_set(ctx, "DataPruning");
    if (opt_.score == ExampleScore::forgetting && forgetting_.size() != ds->size()) forgetting_.resize(ds->size());
    if (ctx.time.epoch < opt_.score_epoch) return;
    if (kept_.empty()) {
      scores_ = opt_.score == ExampleScore::el2n ? el2n_scores(ctx.model, *ds, opt_.chunk) : forgetting_.scores();
      const auto ranked = detail::easy_to_hard(scores_);
      const auto drop = static_cast<std::size_t>(std::floor(opt_.fraction * static_cast<double>(ranked.size())));
      kept_.assign(ranked.begin() + static_cast<std::ptrdiff_t>(std::min(drop, ranked.size() - 1)), ranked.end());
      std::sort(kept_.begin(), kept_.end());
    }
    std::vector<std::int64_t> order = kept_;
    Rng::derive(opt_.seed, static_cast<std::uint64_t>(ctx.time.epoch)).shuffle(order.begin(), order.end());
    ctx.data->set_epoch_order(std::move(order));
  }

  template <class Ctx>
  void on_after_forward(Ctx& ctx) {
    if (opt_.score != ExampleScore::forgetting || !kept_.empty()) return;
    using B = typename Ctx::backend;
    if constexpr (std::is_same_v<B, cpu::eigen>)
      forgetting_.observe(ctx.outputs.data, ctx.batch.labels, ctx.batch.indices);
    else  // read on the host (classes x batch floats)
      forgetting_.observe(host_copy<B>(ctx.outputs.data), ctx.batch.labels, ctx.batch.indices);
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("fraction", opt_.fraction);
    ar.config("score", opt_.score);
    ar.config("score_epoch", opt_.score_epoch);
    ar.config("seed", opt_.seed);
    ar("kept", kept_);  // (the scores themselves are not saved: after a resume scores() is empty)
    if (opt_.score == ExampleScore::forgetting) {
      auto s = ar.scope("forgetting");
      forgetting_.state(ar);
    }
  }

 private:
  DataPruningOptions opt_;
  std::vector<std::int64_t> kept_;
  std::vector<float> scores_;
  ForgettingCounter forgetting_;
};

}  // namespace fasttrain::methods
