// fasttrain/eval/study.hpp -- recipes x seeds x training budgets, and what to conclude from them.
//
//   eval::Study study({.seeds = {1, 2, 3}, .budgets = {3_ep, 6_ep}, .target = 0.91, .baseline = "baseline"});
//   study.add("baseline", [&](const eval::RunSpec& s) { return train_baseline(s); });
//   study.add("recipe",   [&](const eval::RunSpec& s) { return train_recipe(s); });
//   study.run();                               // every (seed, budget, recipe), progress on stderr
//   eval::Summary sum = study.summarize();
//   std::cout << sum.markdown();               // time to target, accuracy per budget, speedups
//   study.write_csv("runs.csv"); study.write_json("runs.json"); study.write_svg("study.svg");
//
// A run function receives a RunSpec and returns the Result of a Trainer::fit() whose
// FitOptions::max_duration is `spec.budget`. Each budget then gets its own fully decayed
// schedule: fasttrain's schedules are functions of the fraction of the budget elapsed
// (optim/schedule.hpp), so a 3-epoch budget decays to zero at epoch 3 -- never a long schedule
// cut short, the survey's first pitfall. With `stop_at_target` the spec carries the target:
// pass it as FitOptions::target_accuracy to stop there (cheaper; the accuracy at the budget is
// then unknown for runs that stopped early, and is reported only for runs that ran to it).
//
// What is concluded (Summary):
// - time to the target per recipe: for each seed, the earliest training-seconds at which any
//   of its budgets' runs reached the target (each run's evaluations form its curve); the median
//   over seeds with a distribution-free interval (stats.hpp: with 3 seeds the range, 75%);
// - the same in epochs, which machine-load drift does not touch;
// - accuracy and seconds at each budget (medians over seeds);
// - each recipe's Pareto frontier of (median seconds, median accuracy) over its budgets;
// - the speedup at equal accuracy against the baseline recipe, at the target and at each of
//   `levels`: median baseline time / median recipe time, with the bounds the two intervals allow.
// Runs are made seed by seed, and within a seed budget by budget, recipe by recipe: a slow
// spell of the machine then hits every recipe instead of one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/time.hpp"
#include "fasttrain/eval/stats.hpp"
#include "fasttrain/eval/svg.hpp"
#include "fasttrain/train/result.hpp"

namespace fasttrain::eval {

/// What one run is asked to do.
struct RunSpec {
  std::string recipe;
  std::uint64_t seed = 1;
  Duration budget{1.0, Unit::epoch};
  std::optional<double> stop_at;  ///< the target, when the study stops runs there
};

struct Run {
  RunSpec spec;
  Result result;
};

struct StudyOptions {
  std::vector<std::uint64_t> seeds{1, 2, 3};
  std::vector<Duration> budgets{};  ///< each gets its own fully decayed schedule
  double target = 0.9;              ///< the accuracy time-to-target is measured at
  std::string baseline{};           ///< the recipe speedups are measured against (empty: the first added)
  std::vector<double> levels{};     ///< more accuracies to report the speedup at
  bool stop_at_target = false;      ///< RunSpec::stop_at = target
  double confidence = 0.95;         ///< asked of the intervals (their real coverage is reported)
  bool verbose = true;              ///< a line per run on stderr
};

/// What the runs of one recipe show.
struct RecipeSummary {
  std::string name;
  Interval seconds_to_target;  ///< over seeds; +inf: not reached
  Interval epochs_to_target;
  std::vector<double> seconds_per_seed, epochs_per_seed;  ///< in StudyOptions::seeds order
  struct AtBudget {
    Duration budget;
    double seconds = never, accuracy = 0;  ///< medians over seeds of runs that ran to the budget
    int runs = 0;                          ///< how many did
  };
  std::vector<AtBudget> budgets;
  std::vector<Point> frontier;  ///< Pareto frontier of the budgets' (seconds, accuracy)
  double speedup = never;       ///< at the target, against the baseline (median / median)
  double speedup_low = never, speedup_high = never;
  std::vector<std::pair<double, double>> speedup_at_levels;  ///< (accuracy, speedup)
};

/// `x` with `digits` digits after the point.
inline std::string fixed(double x, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << x;
  return o.str();
}

struct Summary {
  double target = 0;
  std::string baseline;
  std::vector<RecipeSummary> recipes;

  const RecipeSummary& recipe(const std::string& name) const {
    for (const auto& r : recipes)
      if (r.name == name) return r;
    throw config_error("eval::Summary: no recipe named '" + name + "'");
  }

  /// The Markdown report: one table of time to target and speedups, one of accuracy per budget.
  std::string markdown() const {
    std::ostringstream o;
    auto sec = [](double s) {
      std::ostringstream t;
      if (std::isfinite(s)) t << std::fixed << std::setprecision(1) << s;
      else t << "not reached";
      return t.str();
    };
    auto list = [&](const std::vector<double>& xs, int digits) {
      std::ostringstream t;
      for (std::size_t i = 0; i < xs.size(); ++i)
        t << (i ? ", " : "") << (std::isfinite(xs[i]) ? fixed(xs[i], digits) : "-");
      return t.str();
    };
    const double cov = recipes.empty() ? 0 : recipes.front().seconds_to_target.coverage;
    o << "Time to " << target << " test accuracy: median over seeds [" << std::fixed << std::setprecision(0)
      << 100 * cov << std::defaultfloat << "% interval]; speedup against `" << baseline << "`.\n\n";
    o << "| recipe | seconds to target | per seed | epochs to target | per seed | speedup |\n"
         "|---|---|---|---|---|---|\n";
    for (const auto& r : recipes) {
      o << "| " << r.name << " | " << sec(r.seconds_to_target.median) << " [" << sec(r.seconds_to_target.low) << ", "
        << sec(r.seconds_to_target.high) << "] | " << list(r.seconds_per_seed, 1) << " | "
        << (r.epochs_to_target.finite() ? fixed(r.epochs_to_target.median, 2) : "not reached") << " | "
        << list(r.epochs_per_seed, 2) << " | ";
      if (r.name == baseline) o << "baseline";
      else if (std::isfinite(r.speedup))
        o << std::fixed << std::setprecision(2) << r.speedup << "x [" << r.speedup_low << ", " << r.speedup_high << "]"
          << std::defaultfloat;
      else o << "-";
      o << " |\n";
    }
    bool any_levels = false;
    for (const auto& r : recipes) any_levels |= !r.speedup_at_levels.empty();
    if (any_levels) {
      o << "\nSpeedup at other accuracies (median times):\n\n| recipe |";
      for (const auto& l : recipes.front().speedup_at_levels) o << " " << fixed(l.first, 3) << " |";
      o << "\n|---|";
      for (std::size_t i = 0; i < recipes.front().speedup_at_levels.size(); ++i) o << "---|";
      o << "\n";
      for (const auto& r : recipes) {
        o << "| " << r.name << " |";
        for (const auto& l : r.speedup_at_levels)
          o << " " << (std::isfinite(l.second) ? fixed(l.second, 2) + "x" : "-") << " |";
        o << "\n";
      }
    }
    o << "\nAccuracy at each budget (each budget has its own fully decayed schedule; medians over the seeds whose "
         "run went to the end of the budget -- runs that stopped at the target are not counted, `-` when none "
         "went to the end):\n\n"
         "| recipe | budget | seconds | test accuracy | runs to the end |\n|---|---|---|---|---|\n";
    for (const auto& r : recipes)
      for (const auto& b : r.budgets)
        o << "| " << r.name << " | " << b.budget.str() << " | " << (b.runs ? fixed(b.seconds, 1) : "-") << " | "
          << (b.runs ? fixed(b.accuracy, 4) : "-") << " | " << b.runs << " |\n";
    return o.str();
  }
};

class Study {
 public:
  using RunFn = std::function<Result(const RunSpec&)>;

  explicit Study(StudyOptions opt) : opt_(std::move(opt)) {
    using fasttrain::detail::require;
    require(!opt_.seeds.empty(), "eval::Study: no seeds");
    require(!opt_.budgets.empty(), "eval::Study: no budgets (give at least one, e.g. {5_ep})");
    for (const auto& b : opt_.budgets)
      require(b.value > 0 && std::isfinite(b.value) && b.unit != Unit::dur,
              "eval::Study: a budget must be a positive amount of ep, ba, sp or sec, got ", b.str());
    require(opt_.target > 0 && opt_.target <= 1, "eval::Study: target must be in (0, 1], got ", opt_.target);
    for (double l : opt_.levels) require(l > 0 && l <= 1, "eval::Study: levels must be in (0, 1], got ", l);
  }

  /// Adds a recipe; names must be unique.
  Study& add(std::string name, RunFn fn) {
    fasttrain::detail::require(!name.empty(), "eval::Study::add: a recipe needs a name");
    fasttrain::detail::require(static_cast<bool>(fn), "eval::Study::add: recipe '", name, "' has no run function");
    for (const auto& r : recipes_) fasttrain::detail::require(r.first != name, "eval::Study::add: recipe '", name, "' added twice");
    recipes_.emplace_back(std::move(name), std::move(fn));
    return *this;
  }

  /// Makes every run that is not yet made (seed by seed, budget by budget, recipe by recipe).
  const std::vector<Run>& run() {
    fasttrain::detail::require(!recipes_.empty(), "eval::Study::run: no recipes added");
    (void)baseline();  // a misnamed baseline throws now, not after hours of runs
    for (auto seed : opt_.seeds)
      for (const auto& budget : opt_.budgets)
        for (const auto& [name, fn] : recipes_) {
          if (find(name, seed, budget)) continue;
          RunSpec spec{name, seed, budget, opt_.stop_at_target ? std::optional<double>(opt_.target) : std::nullopt};
          Result r = fn(spec);
          fasttrain::detail::require(!r.history.empty(), "eval::Study: recipe '", name, "' returned a Result without evaluations "
                                              "(pass the test set to fit())");
          if (opt_.verbose)
            std::cerr << "study: " << name << " seed " << seed << " budget " << budget.str() << ": accuracy "
                      << r.test_accuracy << " after " << r.train_seconds << " s; to " << opt_.target << ": "
                      << time_to(r.history, opt_.target) << " s\n";
          runs_.push_back({std::move(spec), std::move(r)});
        }
    return runs_;
  }
  /// Adds a run made elsewhere (a previous session's JSON, another process).
  void add_run(Run r) { runs_.push_back(std::move(r)); }
  const std::vector<Run>& runs() const { return runs_; }
  const StudyOptions& options() const { return opt_; }

  /// The conclusions; speedups against `against` (a recipe's name; empty: the options' baseline).
  Summary summarize(const std::string& against = {}) const {
    Summary s;
    s.target = opt_.target;
    s.baseline = against.empty() ? baseline() : against;
    bool known = false;
    for (const auto& r : recipes_) known |= r.first == s.baseline;
    if (!known) throw config_error("eval::Study::summarize: no recipe named '" + s.baseline + "'");
    for (const auto& [name, fn] : recipes_) s.recipes.push_back(summarize_recipe(name));
    const RecipeSummary* base = nullptr;
    for (const auto& r : s.recipes)
      if (r.name == s.baseline) base = &r;
    if (base)
      for (auto& r : s.recipes) {
        if (std::isfinite(base->seconds_to_target.median) && std::isfinite(r.seconds_to_target.median)) {
          r.speedup = base->seconds_to_target.median / r.seconds_to_target.median;
          r.speedup_low = base->seconds_to_target.low / r.seconds_to_target.high;
          r.speedup_high = base->seconds_to_target.high / r.seconds_to_target.low;
        }
        for (double q : opt_.levels) {
          const double tb = median_time(s.baseline, q), tr = median_time(r.name, q);
          r.speedup_at_levels.emplace_back(q, std::isfinite(tb) && std::isfinite(tr) && tr > 0 ? tb / tr : never);
        }
      }
    return s;
  }

  /// Every evaluation of every run: recipe, seed, budget, and the curve's points.
  void write_csv(const std::string& path) const {
    std::ofstream f(path);
    if (!f) throw data_error(path, "cannot be written");
    f << "recipe,seed,budget,budget_unit,eval,epochs,step,train_seconds,train_loss,test_accuracy\n";
    for (const auto& r : runs_)
      for (std::size_t i = 0; i < r.result.history.size(); ++i) {
        const auto& h = r.result.history[i];
        f << r.spec.recipe << "," << r.spec.seed << "," << r.spec.budget.value << "," << unit_suffix(r.spec.budget.unit)
          << "," << i << "," << json::number(h.epochs > 0 ? h.epochs : static_cast<double>(h.epoch)) << "," << h.step
          << "," << json::number(h.train_seconds) << ","
          << json::number(h.train_loss) << "," << json::number(h.test_accuracy) << "\n";
      }
    if (!f) throw data_error(path, "write failed");
  }
  /// A JSON array: each run's spec and its Result (with its whole history).
  void write_json(const std::string& path) const {
    std::ofstream f(path);
    if (!f) throw data_error(path, "cannot be written");
    f << "[\n";
    for (std::size_t i = 0; i < runs_.size(); ++i) {
      const auto& r = runs_[i];
      json::object o;
      o.add("recipe", r.spec.recipe).add("seed", static_cast<std::int64_t>(r.spec.seed)).add("budget", r.spec.budget.str());
      std::string hist = "[";
      for (std::size_t k = 0; k < r.result.history.size(); ++k) {
        const auto& h = r.result.history[k];
        json::object e;
        e.add("epoch", h.epoch).add("epochs", h.epochs).add("step", h.step).add("train_seconds", h.train_seconds)
            .add("train_loss", h.train_loss).add("test_accuracy", h.test_accuracy);
        hist += (k ? "," : "") + e.str();
      }
      o.raw("history", hist + "]").raw("result", r.result.json());
      f << "  " << o.str() << (i + 1 < runs_.size() ? ",\n" : "\n");
    }
    f << "]\n";
    if (!f) throw data_error(path, "write failed");
  }
  /// Accuracy against training seconds: every run's curve (thin), each recipe's frontier
  /// (thick, markers at its budgets' medians), the target as a dashed line.
  std::string svg() const {
    SvgPlot plot;
    plot.title = "Test accuracy against training time";
    plot.x_label = "training seconds (evaluation excluded)";
    plot.y_label = "test accuracy";
    plot.hline = opt_.target;
    const Summary s = summarize();
    for (std::size_t k = 0; k < recipes_.size(); ++k) {
      const auto& name = recipes_[k].first;
      for (const auto& r : runs_)
        if (r.spec.recipe == name) {
          std::vector<Point> pts;
          for (const auto& h : r.result.history) pts.push_back({h.train_seconds, h.test_accuracy});
          plot.add(pts, k, false, "");
        }
      plot.add(s.recipes[k].frontier, k, true, name);
    }
    return plot.render();
  }
  void write_svg(const std::string& path) const {
    std::ofstream f(path);
    if (!f) throw data_error(path, "cannot be written");
    f << svg();
    if (!f) throw data_error(path, "write failed");
  }

 private:
  std::string baseline() const {
    if (!opt_.baseline.empty()) {
      for (const auto& r : recipes_)
        if (r.first == opt_.baseline) return opt_.baseline;
      throw config_error("eval::Study: the baseline '" + opt_.baseline + "' is not an added recipe");
    }
    return recipes_.empty() ? std::string{} : recipes_.front().first;
  }
  const Run* find(const std::string& name, std::uint64_t seed, const Duration& budget) const {
    for (const auto& r : runs_)
      if (r.spec.recipe == name && r.spec.seed == seed && r.spec.budget == budget) return &r;
    return nullptr;
  }
  // Per seed: the earliest time (or epochs) any budget's run reached q.
  std::vector<double> per_seed(const std::string& name, double q, bool epochs) const {
    std::vector<double> out;
    for (auto seed : opt_.seeds) {
      double best = never;
      bool any = false;
      for (const auto& b : opt_.budgets)
        if (const Run* r = find(name, seed, b)) {
          any = true;
          best = std::min(best, epochs ? epochs_to(r->result.history, q) : time_to(r->result.history, q));
        }
      if (any) out.push_back(best);
    }
    return out;
  }
  double median_time(const std::string& name, double q) const {
    return median_interval(per_seed(name, q, false), opt_.confidence).median;
  }
  RecipeSummary summarize_recipe(const std::string& name) const {
    RecipeSummary r;
    r.name = name;
    r.seconds_per_seed = per_seed(name, opt_.target, false);
    r.epochs_per_seed = per_seed(name, opt_.target, true);
    r.seconds_to_target = median_interval(r.seconds_per_seed, opt_.confidence);
    r.epochs_to_target = median_interval(r.epochs_per_seed, opt_.confidence);
    std::vector<Point> pts;
    for (const auto& b : opt_.budgets) {
      RecipeSummary::AtBudget at{b};
      std::vector<double> secs, accs;
      for (auto seed : opt_.seeds)
        if (const Run* run = find(name, seed, b); run && run->result.stop_reason == "budget") {
          secs.push_back(run->result.train_seconds);
          accs.push_back(run->result.test_accuracy);
        }
      at.runs = static_cast<int>(secs.size());
      if (at.runs) {
        at.seconds = median_interval(secs, opt_.confidence).median;
        at.accuracy = median_interval(accs, opt_.confidence).median;
        pts.push_back({at.seconds, at.accuracy});
      }
      r.budgets.push_back(at);
    }
    if (pts.empty())  // every run stopped at the target: the frontier is the target points
      for (double sec : r.seconds_per_seed)
        if (std::isfinite(sec)) pts.push_back({sec, opt_.target});
    r.frontier = pareto_frontier(pts);
    return r;
  }

  StudyOptions opt_;
  std::vector<std::pair<std::string, RunFn>> recipes_;
  std::vector<Run> runs_;
};

}  // namespace fasttrain::eval
