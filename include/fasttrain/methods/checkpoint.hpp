// fasttrain/methods/checkpoint.hpp -- Checkpoint: saves the whole training state every N
// batches, samples, epochs or seconds, and keeps the newest k files.
//
//   methods::Checkpoint ckpt{{.dir = "run1", .every = 200_ba, .keep = 3}};
//   Trainer t{model, opt, loss, ckpt};
//   FitOptions o{.max_duration = 12_ep};
//   if (auto last = io::latest_checkpoint("run1")) o.resume_from = *last;   // after a kill
//   t.fit(loader, test, o, schedule);
//
// Files are `<dir>/<prefix>-<step>.ftc` (io/checkpoint.hpp: versioned, CRC-checked, written
// atomically), so a process killed at any point leaves the previous checkpoints intact and
// a resumed run ends with weights bitwise identical to an uninterrupted one (same seed,
// thread count and build). Leftover temporary files of a killed write are removed at the
// next save. Under dist::DataParallel each rank writes its own state (mid-epoch its BatchNorm
// statistics differ) to `<dir>/rank-<r>/`; resume every rank from
// `dist::latest_checkpoint(comm, dir)`, the newest step all ranks have.
//
// Not a speedup method: tagged component::none. Hook: batch_end (the step is complete and
// Time advanced there). Also enables FitOptions::on_divergence = Divergence::rollback,
// which reloads the newest checkpoint of the run.
#pragma once

#include <cmath>
#include <filesystem>
#include <string>
#include <system_error>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/io/checkpoint.hpp"
#include "fasttrain/train/context.hpp"
#include "fasttrain/train/events.hpp"
#include "fasttrain/train/method.hpp"

namespace fasttrain::methods {

struct CheckpointOptions {
  std::string dir = "checkpoints";  ///< created if missing
  Duration every{1.0, Unit::epoch};  ///< in ep, ba, sp or sec
  int keep = 3;                      ///< newest files kept; older ones are deleted (0: keep all)
  std::string prefix = "ckpt";       ///< file names: <prefix>-<step>.ftc
};

class Checkpoint {
 public:
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::fit_begin, event::batch_end>;
  /// After every other method, so the state it saves at batch_end includes what their
  /// batch_end hooks did (DataEchoing's repeat request, ProgressiveResizing's restore).
  static constexpr bool runs_last = true;

  explicit Checkpoint(CheckpointOptions o = {}) : opt_(std::move(o)) {
    fasttrain::detail::require(!opt_.dir.empty(), "fasttrain::methods::Checkpoint: dir must not be empty");
    fasttrain::detail::require(opt_.every.value > 0 && opt_.every.unit != Unit::dur,
                               "fasttrain::methods::Checkpoint: every must be a positive ep, ba, sp or sec duration, got ",
                               opt_.every.str());
    fasttrain::detail::require(opt_.keep >= 0, "fasttrain::methods::Checkpoint: keep must be >= 0, got ", opt_.keep);
    fasttrain::detail::require(!opt_.prefix.empty() && opt_.prefix.find('/') == std::string::npos,
                               "fasttrain::methods::Checkpoint: prefix must be a non-empty file name part");
  }
  static std::string name() { return "Checkpoint"; }
  const CheckpointOptions& options() const { return opt_; }
  /// Files written by this object so far (over all fits).
  std::int64_t saved() const { return saved_; }
  /// The newest file written, or empty.
  const std::string& last_path() const { return last_path_; }

  /// Where the files go: `dir`, or in a data-parallel run (DataControl::ranks() > 1) this
  /// rank's own io::rank_directory(dir, rank), so that ranks never write the same file.
  const std::string& directory() const { return dir_; }

  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    dir_ = ctx.data && ctx.data->ranks() > 1 ? io::rank_directory(opt_.dir, ctx.data->rank()) : opt_.dir;
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec || !std::filesystem::is_directory(dir_))
      throw data_error(dir_, "cannot create the checkpoint directory: " + ec.message());
    last_period_ = 0;
  }

  template <class Ctx>
  void on_batch_end(Ctx& ctx) {
    // Saves at the first batch_end at or after each multiple of `every` (every 100 batches:
    // steps 100, 200, ...). The small epsilon keeps 0.3 epochs x 10 from landing below 3.
    const auto period = static_cast<std::int64_t>(std::floor(ctx.time.in(opt_.every.unit) / opt_.every.value + 1e-9));
    if (period <= last_period_) return;
    last_period_ = period;
    if (!ctx.checkpointer)
      throw std::logic_error("fasttrain::methods::Checkpoint: batch_end context without a checkpointer");
    const std::string path = io::checkpoint_path(dir_, opt_.prefix, ctx.time.batch);
    ctx.checkpointer->save(path);
    last_path_ = path;
    ++saved_;
    prune(path);
  }

  /// The save schedule's position, so a resumed run saves at the same steps.
  template <class Archive>
  void state(Archive& ar) {
    ar.config("every", opt_.every.value);
    ar.config("every_unit", opt_.every.unit);
    ar("last_period", last_period_);
  }

 private:
  // Deletes all but the newest `keep` checkpoints, and temporary files left by a killed write.
  void prune(const std::string& newest) const {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_, ec)) {
      const std::string n = e.path().filename().string();
      if (n.rfind(opt_.prefix + "-", 0) == 0 && n.find(".ftc.tmp.") != std::string::npos) fs::remove(e.path(), ec);
    }
    if (opt_.keep == 0) return;
    const auto all = io::list_checkpoints(dir_, opt_.prefix);
    const auto excess = static_cast<std::ptrdiff_t>(all.size()) - opt_.keep;
    for (std::ptrdiff_t i = 0; i < excess; ++i)
      if (all[static_cast<std::size_t>(i)].second != newest) fs::remove(all[static_cast<std::size_t>(i)].second, ec);
  }

  CheckpointOptions opt_;
  std::string dir_ = opt_.dir;
  std::int64_t last_period_ = 0;
  std::int64_t saved_ = 0;
  std::string last_path_;
};

}  // namespace fasttrain::methods
