// fasttrain/profile/profiler.hpp -- where a training run's time goes.
//
//   profile::Profiler prof;                         // a method: put it in the recipe
//   Trainer trainer{model, opt, loss, methods::LabelSmoothing{0.1f}, prof};
//   trainer.fit(loader, test, {.max_duration = 1_ep});
//   const profile::Profile& p = trainer.method<profile::Profiler>().profile();
//   std::cout << p.table();                        // seconds and share per phase and method
//   std::cout << profile::diagnose(p, profile::Machine::probe()).report();   // diagnose.hpp
//
// With a Profiler in the recipe the Trainer times (train/phases.hpp): the wait for each batch,
// forward, loss, backward, the optimizer step, its finiteness checks, every method's hooks
// (each method on its own line) and evaluation. Without one, none of that code is compiled:
// no clock is read. The cost when on is two steady_clock reads per phase and step (tens of
// nanoseconds; a training step takes milliseconds).
//
// The Profiler also counts the FLOPs of what was trained (eval/flops.hpp, at each step's
// actual batch size and input shape, so ProgressiveResizing's small images count as small)
// and reads the process's peak resident memory at the end.
#pragma once

#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iomanip>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/eval/flops.hpp"
#include "fasttrain/train/train.hpp"

namespace fasttrain::profile {

/// The process's peak resident set size in bytes (Linux: VmHWM of /proc/self/status; 0 when
/// it cannot be read).
inline double peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) {
      std::istringstream s(line.substr(6));
      double kb = 0;
      s >> kb;
      return kb * 1024.0;
    }
  return 0;
}

/// One profiled fit().
struct Profile {
  double train_seconds = 0;                        ///< the Trainer's training seconds (evaluation excluded)
  std::array<double, num_phases> phase_seconds{};  ///< per Phase (eval is not part of train_seconds)
  std::vector<std::pair<std::string, double>> method_seconds;  ///< each method's hooks, in run order
  std::int64_t steps = 0, samples = 0;             ///< optimizer steps and samples trained on
  double train_flops = 0;                          ///< forward + backward FLOPs of every step
  double forward_flops = 0;
  double peak_rss_bytes = 0;

  double phase(Phase p) const { return phase_seconds[static_cast<std::size_t>(p)]; }
  double methods_total() const {
    double s = 0;
    for (const auto& m : method_seconds) s += m.second;
    return s;
  }
  /// Training seconds in no timed phase: loop bookkeeping, progress output, epoch starts.
  double other_seconds() const {
    double s = train_seconds - methods_total();
    for (int p = 0; p < num_phases; ++p)
      if (static_cast<Phase>(p) != Phase::eval) s -= phase_seconds[static_cast<std::size_t>(p)];
    return s > 0 ? s : 0;
  }
  /// Share of the training seconds (0 when nothing was trained).
  double share(double seconds) const { return train_seconds > 0 ? seconds / train_seconds : 0; }
  /// FLOP/s achieved in forward + backward (the network's own passes).
  double compute_flops_per_second() const {
    const double s = phase(Phase::forward) + phase(Phase::backward);
    return s > 0 ? train_flops / s : 0;
  }

  /// A Markdown table: seconds, share of training time and per-step milliseconds of every
  /// phase and method, then evaluation apart.
  std::string table() const {
    std::ostringstream o;
    o << std::fixed;
    o << "| phase | seconds | share of training | ms per step |\n|---|---|---|---|\n";
    auto row = [&](const std::string& name, double s, bool in_training = true) {
      o << "| " << name << " | " << std::setprecision(3) << s << " | ";
      if (in_training) o << std::setprecision(1) << 100 * share(s) << "%";
      else o << "(not training)";
      o << " | " << std::setprecision(3) << (steps > 0 ? 1000 * s / static_cast<double>(steps) : 0) << " |\n";
    };
    for (Phase p : {Phase::data, Phase::forward, Phase::loss, Phase::backward, Phase::step, Phase::checks})
      row(phase_name(p), phase(p));
    for (const auto& m : method_seconds) row("method " + m.first, m.second);
    row("other", other_seconds());
    row("**training total**", train_seconds);
    row(phase_name(Phase::eval), phase(Phase::eval), false);
    o << std::defaultfloat;
    return o.str();
  }

  /// One JSON object (no newline).
  std::string json() const {
    std::ostringstream o;
    o << std::setprecision(6) << "{\"train_seconds\":" << train_seconds << ",\"steps\":" << steps
      << ",\"samples\":" << samples << ",\"phases\":{";
    for (int p = 0; p < num_phases; ++p)
      o << (p ? "," : "") << "\"" << phase_name(static_cast<Phase>(p)) << "\":" << phase_seconds[static_cast<std::size_t>(p)];
    o << ",\"other\":" << other_seconds() << "},\"methods\":{";
    for (std::size_t i = 0; i < method_seconds.size(); ++i)
      o << (i ? "," : "") << "\"" << method_seconds[i].first << "\":" << method_seconds[i].second;
    o << "},\"train_flops\":" << train_flops << ",\"compute_gflops_per_second\":" << compute_flops_per_second() / 1e9
      << ",\"peak_rss_bytes\":" << peak_rss_bytes << "}";
    return o.str();
  }
};

/// The method that turns phase timing on (a Trainer with it times its phases; see above).
/// Tagged component::none: it changes nothing about training.
class Profiler {
 public:
  static constexpr taxonomy tag{component::none, action::retrofit};
  static constexpr bool phase_timer = true;
  using events = fasttrain::events<event::fit_begin, event::fit_end>;
  static std::string name() { return "Profiler"; }

  /// The last fit()'s profile (complete after fit() returns).
  const Profile& profile() const { return profile_; }

  // ---- called by the Trainer (train/phases.hpp) -------------------------------------
  void begin_timing(std::vector<std::string> method_names) {
    profile_ = Profile{};
    names_ = std::move(method_names);
    method_seconds_.assign(names_.size(), 0.0);
    last_shape_ = Shape{};
    have_shape_ = false;
  }
  void add_phase(Phase p, double seconds) { profile_.phase_seconds[static_cast<std::size_t>(p)] += seconds; }
  void add_method(std::size_t i, double seconds) {
    if (i < method_seconds_.size()) method_seconds_[i] += seconds;
  }
  void add_step(std::int64_t samples, const Shape& sample_shape) {
    ++profile_.steps;
    profile_.samples += samples;
    if (!have_shape_ || !(sample_shape == last_shape_)) {
      last_ = flops_ ? flops_(sample_shape) : eval::Flops{};
      last_shape_ = sample_shape;
      have_shape_ = true;
    }
    profile_.train_flops += static_cast<double>(samples) * last_.total();
    profile_.forward_flops += static_cast<double>(samples) * last_.forward;
  }

  // ---- hooks ---------------------------------------------------------------------------
  template <class Ctx>
  void on_fit_begin(Ctx& ctx) {
    auto* model = &ctx.model;
    flops_ = [model](const Shape& s) { return eval::flops(*model, s); };
  }
  template <class Ctx>
  void on_fit_end(Ctx& ctx) {
    profile_.train_seconds = ctx.time.seconds;
    profile_.method_seconds.clear();
    for (std::size_t i = 0; i < names_.size(); ++i)
      if (names_[i] != name()) profile_.method_seconds.emplace_back(names_[i], method_seconds_[i]);
    profile_.peak_rss_bytes = peak_rss_bytes();
    flops_ = nullptr;
  }

 private:
  Profile profile_;
  std::vector<std::string> names_;
  std::vector<double> method_seconds_;
  std::function<eval::Flops(const Shape&)> flops_;
  Shape last_shape_{};
  bool have_shape_ = false;
  eval::Flops last_{};
};

}  // namespace fasttrain::profile
