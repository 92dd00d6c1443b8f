// fasttrain/train/progress.hpp -- a one-line progress display on a terminal.
//
// Shown on stderr only when stderr is a terminal (or when forced), redrawn at most
// a few times a second; silent otherwise, so logs and pipes get only the JSON line.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace fasttrain {

enum class ProgressMode { automatic, always, never };

class Progress {
 public:
  explicit Progress(ProgressMode mode = ProgressMode::automatic)
      : enabled_(mode == ProgressMode::always || (mode == ProgressMode::automatic && ::isatty(2))) {}

  bool enabled() const { return enabled_; }

  /// Redraws the line if enough time has passed since the last redraw (or `force`).
  void update(std::int64_t epoch, double epochs_total, std::int64_t step, double loss, double last_acc,
              double samples_per_s, double fraction_done, double seconds, bool force = false) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(200)) return;
    last_ = now;
    const double eta = fraction_done > 0 ? seconds * (1.0 - fraction_done) / fraction_done : 0.0;
    char acc[32] = "  -   ";
    if (last_acc == last_acc) std::snprintf(acc, sizeof acc, "%.4f", last_acc);
    std::fprintf(stderr, "\r\x1b[Kepoch %lld/%.0f  step %lld  loss %.4f  test acc %s  %.0f samples/s  left %.0fs",
                 static_cast<long long>(epoch + 1), epochs_total, static_cast<long long>(step), loss, acc,
                 samples_per_s, eta);
    std::fflush(stderr);
  }
  /// Ends the line (keeps the last state on screen).
  void finish() {
    if (enabled_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace fasttrain
