// fasttrain/dist/data_parallel.hpp -- dist::DataParallel: synchronous data-parallel training
// over MPI, as one more method in the recipe.
//
//   dist::run(argc, argv, [&](dist::Communicator& comm) {
//     data::Loader loader(train, {.batch_size = 64, .seed = 1,
//                                 .num_shards = comm.size(), .shard = comm.rank()});
//     Trainer t{model, opt, loss, methods::LabelSmoothing{0.1f}, dist::DataParallel{comm}};
//     t.fit(loader, test, {.max_duration = 10_ep, .progress = comm.rank() == 0 ? ... : ProgressMode::off});
//   });
//
// Every rank holds the whole model and trains on its shard of each epoch (the Loader's
// num_shards / shard; data::shard_order). What DataParallel does, by event:
//   fit_begin    checks that the ranks agree (same number of parameters and of batches per
//                epoch, and a sharded loader), then copies rank 0's parameters and
//                BatchNorm statistics to every rank, so that all start from the same weights,
//                and tells the Trainer the rank (methods::Checkpoint then writes each rank's
//                checkpoints to its own directory, <dir>/rank-<r>; dist::latest_checkpoint
//                finds the newest step every rank has; a checkpoint records the number of
//                ranks and resuming with another number is refused, naming both);
//   before_step  replaces each gradient by its mean over the ranks: the gradients are packed
//                into buckets of `bucket_elements` floats, and each bucket's allreduce
//                (MPI_Iallreduce, sum) is started as soon as it is packed, so that it travels
//                while the next is packed; then every gradient is scaled by 1 / W. It runs
//                after SAM (whose perturbation then uses the rank's own gradient, the paper's
//                per-accelerator "m-sharpness") and before GradientClipping (which then clips
//                by the global gradient's norm, the same on every rank);
//   epoch_end    averages the BatchNorm running statistics over the ranks (each rank saw
//                other samples), so that evaluation sees one model;
//   eval_begin   gives each rank its shard of the test set (data::shard_range: rank r of W
//                evaluates samples [n r / W, n (r+1) / W)) and, for the evaluation only, the
//                BatchNorm statistics averaged over the ranks (mid-epoch they differ);
//   eval_end     puts the rank's statistics back and sums the ranks' correct predictions
//                and samples: every rank gets the whole test set's accuracy, exactly, so all
//                take the same decision on a target accuracy (a rank that stops alone would
//                leave the others waiting). This is a collective: call Trainer::evaluate on
//                every rank, never on rank 0 alone;
//   fit_end      averages the BatchNorm statistics over the ranks once more (after EMA, if
//                it is in the recipe, put its averages in), so every rank ends with one model.
// W ranks with batch b then take the steps one process with batch W*b takes (exactly so for
// a network without BatchNorm or dropout, up to the order of the floating-point sums):
// tests/test_dist.cpp checks it.
//
// Not done: the allreduce starts after the whole backward pass, not layer by layer during it
// (the layers have no per-layer backward hook yet); BatchNorm normalises over the rank's
// batch (no synchronised BatchNorm). A
// budget in seconds is refused: the ranks' clocks differ, and they must stop together.
#pragma once

#include <algorithm>
#include <chrono>
#include <iostream>
#include <limits>
#include <optional>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/dist/mpi.hpp"
#include "fasttrain/io/checkpoint.hpp"
#include "fasttrain/nn/layer.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {
class SAM;
class GradientClipping;
class EMA;
}  // namespace fasttrain::methods

namespace fasttrain::dist {

struct DataParallelOptions {
  /// Floats per allreduce (1 MiB of gradients by default). Smaller buckets start travelling
  /// sooner; larger ones pay the per-message latency fewer times.
  std::size_t bucket_elements = std::size_t{1} << 18;
  /// Average the BatchNorm running statistics over the ranks at every epoch's end.
  bool average_batchnorm_statistics = true;
};

/// What DataParallel measured in the current run.
struct DataParallelStats {
  /// In the gradient allreduces, packing and scaling included, and waiting for the slowest
  /// rank to arrive: on a loaded or uneven machine that wait dominates.
  double communication_seconds = 0;
  std::int64_t reductions = 0;       ///< steps whose gradients were averaged
  std::int64_t messages = 0;         ///< allreduce calls (buckets)
  std::int64_t bytes = 0;            ///< gradient bytes each rank contributed
  std::int64_t eval_samples = 0;     ///< test samples this rank evaluated (its shards)
};

class DataParallel {
 public:
  /// Infrastructure, not a speedup method: it spreads the same computation over ranks.
  static constexpr taxonomy tag{component::none, action::retrofit};
  /// Copies gradients through host pointers into MPI buffers: cpu::eigen only so far (the
  /// Trainer refuses it on other backends; docs/backends.md).
  static constexpr bool eigen_only = true;
  using events = fasttrain::events<event::fit_begin, event::before_step, event::epoch_end, event::eval_begin,
                                   event::eval_end, event::fit_end>;
  /// After EMA: at eval_begin and fit_end it averages the statistics EMA put in.
  using runs_after = type_list<methods::SAM, methods::EMA>;
  using runs_before = type_list<methods::GradientClipping>;

  explicit DataParallel(Communicator comm, DataParallelOptions o = {}) : comm_(comm), opt_(o) {
    fasttrain::detail::require(opt_.bucket_elements >= 1 && opt_.bucket_elements <= (std::size_t{1} << 30),
                               "fasttrain::dist::DataParallel: bucket_elements must be in [1, 2^30], got ",
                               opt_.bucket_elements);
  }
  static std::string name() { return "DataParallel"; }
  const Communicator& communicator() const { return comm_; }
  const DataParallelOptions& options() const { return opt_; }
  const DataParallelStats& stats() const { return stats_; }

  void reset() { stats_ = {}; }

  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    const int w = comm_.size();
    const char* who = "fasttrain::dist::DataParallel: ";
    if (ctx.time.max_duration.unit == Unit::second)
      throw config_error(fasttrain::detail::cat(
          who, "a budget in seconds (", ctx.time.max_duration.str(),
          ") would stop the ranks at different steps; give it in epochs, batches or samples"));
    std::int64_t n = 0;
    ctx.model.for_each_parameter([&](auto& p, auto&) { n += static_cast<std::int64_t>(p.size()); });
    agree(n, "parameters");
    agree(ctx.time.batches_per_epoch, "batches per epoch");
    if (w > 1 && ctx.data && ctx.data->dataset() &&
        ctx.time.samples_per_epoch > ctx.data->dataset()->size() / w)
      throw config_error(fasttrain::detail::cat(
          who, "rank ", comm_.rank(), " draws ", ctx.time.samples_per_epoch, " samples per epoch of a training set of ",
          ctx.data->dataset()->size(), ": every rank would read the whole set; give each rank's data::Loader "
          ".num_shards = ", w, " and .shard = its rank"));
    flat_.resize(static_cast<std::size_t>(n));
    if (ctx.data) ctx.data->set_ranks(comm_.rank(), w);
    if (w == 1) return;
    pack_parameters(ctx.model);
    comm_.broadcast(flat_.data(), flat_.size(), 0);
    unpack_parameters(ctx.model);
    for_each_statistic(ctx.model, [&](auto& s) { comm_.broadcast(s.data(), static_cast<std::size_t>(s.size()), 0); });
  }

  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    const int w = comm_.size();
    if (w == 1) return;
    const auto t0 = std::chrono::steady_clock::now();
    // Pack bucket by bucket; each bucket's allreduce starts once it is full.
    requests_.clear();
    std::size_t filled = 0, started = 0;
    ctx.model.for_each_parameter([&](auto&, auto& g) {
      const auto m = static_cast<std::size_t>(g.size());
      const float* src = g.data();
      for (std::size_t k = 0; k < m;) {
        const std::size_t room = opt_.bucket_elements - (filled - started);
        const std::size_t take = m - k < room ? m - k : room;
        std::copy(src + k, src + k + take, flat_.data() + filled);
        filled += take;
        k += take;
        if (filled - started == opt_.bucket_elements) start(started, filled);
      }
    });
    if (filled > started) start(started, filled);
    if (filled != flat_.size())
      throw std::logic_error("fasttrain::dist::DataParallel: the model's parameters changed size since fit_begin");
    for (auto& r : requests_) Communicator::wait(r);
    const float inv = 1.f / static_cast<float>(w);
    std::size_t at = 0;
    ctx.model.for_each_parameter([&](auto&, auto& g) {
      float* dst = g.data();
      for (std::size_t k = 0, m = static_cast<std::size_t>(g.size()); k < m; ++k) dst[k] = flat_[at + k] * inv;
      at += static_cast<std::size_t>(g.size());
    });
    ++stats_.reductions;
    stats_.bytes += static_cast<std::int64_t>(flat_.size() * sizeof(float));
    stats_.communication_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  template <class Ctx>
  void on_epoch_end(Ctx& ctx) {
    if (opt_.average_batchnorm_statistics) average_statistics(ctx.model);
  }

  template <class Ctx>
  void on_eval_begin(Ctx& ctx) {
    if (comm_.size() == 1) return;
    ctx.shard = comm_.rank();
    ctx.num_shards = comm_.size();
    saved_.clear();
    for_each_statistic(ctx.model, [&](auto& s) { saved_.emplace_back(s.data(), s.data() + s.size()); });
    average_statistics(ctx.model);
  }
  template <class Ctx>
  void on_eval_end(Ctx& ctx) {
    if (comm_.size() == 1) return;
    std::size_t i = 0;
    for_each_statistic(ctx.model, [&](auto& s) {
      if (i < saved_.size() && saved_[i].size() == static_cast<std::size_t>(s.size()))
        std::copy(saved_[i].begin(), saved_[i].end(), s.data());
      ++i;
    });
    const std::int64_t correct = comm_.sum(ctx.correct), samples = comm_.sum(ctx.samples);
    ctx.accuracy = samples > 0 ? static_cast<double>(correct) / static_cast<double>(samples) : 0.0;
    stats_.eval_samples += ctx.samples;
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    if (opt_.average_batchnorm_statistics) average_statistics(ctx.model);
  }

  template <class Archive>
  void state(Archive& ar) {
    const std::int64_t w = comm_.size();
    ar.config("ranks", w);  // a checkpoint resumes only with as many ranks as wrote it
    ar.config("average_batchnorm_statistics", opt_.average_batchnorm_statistics);
  }

 private:
  template <class Model>
  void average_statistics(Model& model) const {
    const int w = comm_.size();
    if (w == 1) return;
    const float inv = 1.f / static_cast<float>(w);
    for_each_statistic(model, [&](auto& s) {
      comm_.allreduce_sum(s.data(), static_cast<std::size_t>(s.size()));
      s *= inv;
    });
  }
  void agree(std::int64_t v, const char* what) const {
    const std::int64_t lo = comm_.min(v), hi = comm_.max(v);
    if (lo != hi)
      throw config_error(fasttrain::detail::cat(
          "fasttrain::dist::DataParallel: the ranks disagree on the number of ", what, " (from ", lo, " to ", hi,
          "; this is rank ", comm_.rank(), " with ", v, "): every rank must build the same model and a data::Loader "
          "with the same options but its own .shard"));
  }
  void start(std::size_t& started, std::size_t filled) {
    requests_.push_back(comm_.start_allreduce_sum(flat_.data() + started, filled - started));
    ++stats_.messages;
    started = filled;
  }
  template <class Model>
  void pack_parameters(Model& model) {
    std::size_t at = 0;
    model.for_each_parameter([&](auto& p, auto&) {
      std::copy(p.data(), p.data() + p.size(), flat_.data() + at);
      at += static_cast<std::size_t>(p.size());
    });
  }
  template <class Model>
  void unpack_parameters(Model& model) {
    std::size_t at = 0;
    model.for_each_parameter([&](auto& p, auto&) {
      std::copy(flat_.data() + at, flat_.data() + at + p.size(), p.data());
      at += static_cast<std::size_t>(p.size());
    });
  }
  template <class Model, class F>
  static void for_each_statistic(Model& model, F&& f) {
    nn::for_each_running_statistic(model, f);
  }

  Communicator comm_;
  DataParallelOptions opt_;
  DataParallelStats stats_;
  std::vector<float> flat_;  // the gradients (or, at fit_begin, the parameters) in for_each_parameter order
  std::vector<MPI_Request> requests_;
  std::vector<std::vector<float>> saved_;  // the rank's BatchNorm statistics during an evaluation
};

/// The newest checkpoint step that every rank of `comm` has written and can read, in the
/// rank directories methods::Checkpoint writes under DataParallel (io::rank_directory(dir,
/// rank)): this rank's file for it, or nullopt when the ranks have none in common. A
/// collective: call it on every rank.
inline std::optional<std::string> latest_checkpoint(const Communicator& comm, const std::string& dir,
                                                    const std::string& prefix = "ckpt") {
  const auto all = io::list_checkpoints(io::rank_directory(dir, comm.rank()), prefix);
  auto readable = [](const std::string& path) {
    try {
      (void)io::read_checkpoint(path);
      return true;
    } catch (const data_error& e) {
      std::cerr << "fasttrain: skipping unreadable checkpoint: " << e.what() << "\n";
      return false;
    }
  };
  std::int64_t bound = std::numeric_limits<std::int64_t>::max();
  for (;;) {
    std::int64_t mine = -1;  // this rank's newest readable step up to bound
    std::string path;
    for (auto it = all.rbegin(); it != all.rend(); ++it)
      if (it->first <= bound && readable(it->second)) {
        mine = it->first;
        path = it->second;
        break;
      }
    const std::int64_t agreed = comm.min(mine);
    if (agreed < 0) return std::nullopt;
    if (mine != agreed) {  // this rank is ahead: does it have the agreed step too?
      path.clear();
      for (const auto& [step, p] : all)
        if (step == agreed && readable(p)) path = p;
    }
    if (comm.min(path.empty() ? 0 : 1) == 1) return path;
    bound = agreed - 1;
  }
}

}  // namespace fasttrain::dist
