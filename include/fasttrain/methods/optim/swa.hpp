// fasttrain/methods/optim/swa.hpp -- SWA (optimization / retrofit).
//
// Stochastic weight averaging: Izmailov, Podoprikhin, Garipov, Vetrov, Wilson 2018, "Averaging
// Weights Leads to Wider Optima and Better Generalization" (arXiv:1803.05407); defaults after
// MosaicML Composer's SWA (start 0.7 dur, end 0.97 dur, one update per epoch; the run's own
// learning-rate schedule is kept). Between `start` and `end` the weights are averaged with equal
// weight every `update_every` (in ba or ep):
//   avg <- (n avg + w) / (n + 1)
// When training reaches `end` (or fit() ends first) the model's weights are replaced by the
// average, and the BatchNorm running statistics, which belong to no weights in particular, are
// recomputed for the averaged weights by one training-mode pass over the training set: each
// BatchNorm layer's statistics become the mean over chunks of `bn_chunk` samples of the chunk's
// statistics (with nn::GhostBatchNorm2d, of the last ghost batch of each chunk). Training then
// goes on from the averaged weights for the rest of the budget.
//
//   Trainer t{model, opt, loss, methods::SWA{{.start = 0.7_dur, .end = 0.97_dur}}};
//
// Hooks: fit_begin (checks), batch_end / epoch_end (update, and the swap at `end`), fit_end
// (the swap, when `end` was not reached). The statistics pass runs inside a batch_end or
// epoch_end hook, so its time counts as training time. Conflicts with EMA: both average weights
// and replace the model with their average.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/tensor/eigen.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/buffers.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

class EMA;

struct SWAOptions {
  Duration start{0.7, Unit::dur};       ///< averaging starts
  Duration end{0.97, Unit::dur};        ///< the model takes the average (in the same unit as start)
  Duration update_every{1.0, Unit::epoch};  ///< between updates: whole ba or ep
  std::int64_t bn_chunk = 256;          ///< samples per forward pass of the statistics pass
};

/// Recomputes the running statistics of every BatchNorm-like layer of `model` (a layer with
/// running_mean, running_var and set_momentum) for its current weights: one training-mode
/// pass over `ds` in chunks of `chunk` samples; each statistic becomes the mean over chunks.
/// Residual bodies are all run (a StochasticDepth draw is set aside and restored). Returns the
/// number of layers updated.
template <class Model>
std::int64_t recompute_batchnorm(Model& model, const data::Dataset& ds, std::int64_t chunk) {
  using B = typename Model::backend;
  using host = Eigen::MatrixXf;  // the sums are kept on the host: C floats per layer
  auto to_host = [](const typename B::matrix& m) {
    host h(m.rows(), m.cols());
    B::to_host(m, h.data());
    return h;
  };
  struct saved {
    float momentum;
    host mean_sum, var_sum;
  };
  std::vector<saved> bn;
  std::vector<std::pair<bool, float>> bodies;
  nn::visit_layers(model, [&](auto& l) {
    if constexpr (nn::RunningStatistics<decltype(l)>) {
      bn.push_back({l.momentum(), host::Zero(l.running_mean.rows(), l.running_mean.cols()),
                    host::Zero(l.running_var.rows(), l.running_var.cols())});
      l.set_momentum(1.f);  // after a forward, running_* hold that forward's statistics
    }
    if constexpr (nn::SkippableBody<decltype(l)>) {
      bodies.emplace_back(l.body_active(), l.body_scale());
      l.set_body(true, 1.f);
    }
  });
  if (bn.empty()) return 0;
  typename Model::backend::tensor x;
  std::int64_t chunks = 0;
  for (std::int64_t first = 0; first < ds.size(); first += chunk) {
    const std::int64_t n = std::min(chunk, ds.size() - first);
    if (n < 2 && chunks > 0) break;  // a last chunk of one sample has no variance
    x.shape = ds.sample_shape;
    B::from_host(ds.features.data() + first * ds.features.rows(), ds.features.rows(), n, x.data);
    (void)model.forward(x, nn::Mode::train);
    std::size_t i = 0;
    nn::visit_layers(model, [&](auto& l) {
      if constexpr (nn::RunningStatistics<decltype(l)>) {
        bn[i].mean_sum += to_host(l.running_mean);
        bn[i].var_sum += to_host(l.running_var);
        ++i;
      }
    });
    ++chunks;
  }
  std::size_t i = 0, b = 0;
  nn::visit_layers(model, [&](auto& l) {
    if constexpr (nn::RunningStatistics<decltype(l)>) {
      const host mean = bn[i].mean_sum / static_cast<float>(chunks), var = bn[i].var_sum / static_cast<float>(chunks);
      B::from_host(mean.data(), mean.rows(), mean.cols(), l.running_mean);
      B::from_host(var.data(), var.rows(), var.cols(), l.running_var);
      l.set_momentum(bn[i].momentum);
      ++i;
    }
    if constexpr (nn::SkippableBody<decltype(l)>) {
      l.set_body(bodies[b].first, bodies[b].second);
      ++b;
    }
  });
  return static_cast<std::int64_t>(bn.size());
}

class SWA {
 public:
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::fit_begin, event::batch_end, event::epoch_end, event::fit_end>;
  using conflicts_with = type_list<EMA>;

  explicit SWA(SWAOptions o = {}) : opt_(o) {
    using fasttrain::detail::require;
    const char* who = "fasttrain::methods::SWA: ";
    require(opt_.start.value >= 0 && std::isfinite(opt_.start.value), who, "start must be >= 0, got ",
            opt_.start.str());
    require(opt_.end.unit == opt_.start.unit, who, "end must be in the unit of start (", opt_.start.str(),
            "), got ", opt_.end.str());
    require(opt_.end.value > opt_.start.value && std::isfinite(opt_.end.value), who, "end (", opt_.end.str(),
            ") must come after start (", opt_.start.str(), ")");
    require((opt_.update_every.unit == Unit::batch || opt_.update_every.unit == Unit::epoch) &&
                opt_.update_every.value >= 1 && opt_.update_every.value == std::floor(opt_.update_every.value),
            who, "update_every must be a whole number (>= 1) of ba or ep, got ", opt_.update_every.str());
    require(opt_.bn_chunk >= 2, who, "bn_chunk must be >= 2, got ", opt_.bn_chunk);
  }
  static std::string name() { return "SWA"; }
  const SWAOptions& options() const { return opt_; }
  /// Weights averaged so far.
  std::int64_t count() const { return count_; }
  /// Whether the model holds the average (from `end` on).
  bool applied() const { return applied_; }
  /// The average, in for_each_parameter order, as host matrices (ParamBuffers::host).
  const std::vector<Eigen::MatrixXf>& averaged() const { return avg_.host(); }

  void reset() {
    avg_.clear();
    count_ = 0;
    applied_ = false;
  }

  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    std::int64_t bn = 0;
    nn::visit_layers(ctx.model, [&](auto& l) {
      if constexpr (nn::RunningStatistics<decltype(l)>) ++bn;
    });
    if (bn > 0 && (!ctx.data || !ctx.data->dataset()))
      throw config_error("fasttrain::methods::SWA: the model has BatchNorm layers, whose statistics SWA recomputes "
                         "from the training set, but the data source does not expose it (use data::Loader)");
  }
  template <class Ctx>
  void on_batch_end(Ctx& ctx) {
    if (opt_.update_every.unit == Unit::batch &&
        ctx.time.batch % static_cast<std::int64_t>(opt_.update_every.value) == 0)
      update(ctx);
    finish_if_due(ctx);
  }
  template <class Ctx>
  void on_epoch_end(Ctx& ctx) {
    if (opt_.update_every.unit == Unit::epoch &&
        ctx.time.epoch % static_cast<std::int64_t>(opt_.update_every.value) == 0)
      update(ctx);
    finish_if_due(ctx);
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    if (!applied_ && count_ > 0) apply(ctx);
  }

  template <class Archive>
  void state(Archive& ar) {
    ar.config("start", opt_.start.value);
    ar.config("start_unit", opt_.start.unit);
    ar.config("end", opt_.end.value);
    ar.config("update_every", opt_.update_every.value);
    ar.config("update_unit", opt_.update_every.unit);
    ar.config("bn_chunk", opt_.bn_chunk);
    avg_.archive(ar, "averaged");
    ar("count", count_);
    ar("applied", applied_);
  }

 private:
  template <class Ctx>
  void update(Ctx& ctx) {
    if (applied_ || !ctx.time.reached(opt_.start) || ctx.time.reached(opt_.end)) return;
    using B = typename std::decay_t<decltype(ctx.model)>::backend;
    auto& avg = avg_.on<B>();
    if (avg.empty()) {
      ctx.model.for_each_parameter([&](auto& p, auto&) { avg.push_back(p); });
      count_ = 1;
      return;
    }
    const float keep = static_cast<float>(count_) / static_cast<float>(count_ + 1);
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) { fasttrain::detail::blend_into<B>(avg[i++], p, keep); });
    ++count_;
  }
  template <class Ctx>
  void finish_if_due(Ctx& ctx) {
    if (!applied_ && count_ > 0 && ctx.time.reached(opt_.end)) apply(ctx);
  }
  template <class Ctx>
  void apply(Ctx& ctx) {
    auto& avg = avg_.on<typename std::decay_t<decltype(ctx.model)>::backend>();
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) {
      if (i >= avg.size() || avg[i].rows() != p.rows() || avg[i].cols() != p.cols())
        throw shape_error("fasttrain::methods::SWA: the averaged weights do not match the model (a different model?)");
      p = avg[i++];
    });
    if (ctx.data && ctx.data->dataset()) recompute_batchnorm(ctx.model, *ctx.data->dataset(), opt_.bn_chunk);
    applied_ = true;
  }

  SWAOptions opt_;
  ParamBuffers avg_;  // the average, on the model's backend
  std::int64_t count_ = 0;
  bool applied_ = false;
};

}  // namespace fasttrain::methods
