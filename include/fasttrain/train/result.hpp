// fasttrain/train/result.hpp -- what a training run reports, and its one-line JSON form.
//
// Every example and benchmark ends its output with `result.json()`: one line that
// scripts can rely on (name, test_accuracy, samples_per_second, train_seconds,
// time_to_target_seconds when a target was set, ...).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fasttrain {

namespace json {
inline std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}
/// A number, or null when it is not finite (JSON has no NaN).
inline std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

/// Builds one JSON object, field by field, in insertion order.
class object {
 public:
  object& add(const std::string& k, const std::string& v) { return raw(k, quote(v)); }
  object& add(const std::string& k, const char* v) { return raw(k, quote(v)); }
  object& add(const std::string& k, double v) { return raw(k, number(v)); }
  object& add(const std::string& k, std::int64_t v) { return raw(k, std::to_string(v)); }
  object& add(const std::string& k, int v) { return raw(k, std::to_string(v)); }
  object& add(const std::string& k, bool v) { return raw(k, v ? "true" : "false"); }
  object& add(const std::string& k, std::optional<double> v) { return raw(k, v ? number(*v) : "null"); }
  object& raw(const std::string& k, const std::string& v) {
    body_ += (body_.empty() ? "" : ",") + quote(k) + ":" + v;
    return *this;
  }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};
}  // namespace json

/// One evaluation point: where training was and how good the model was.
struct EvalRecord {
  std::int64_t epoch = 0;
  std::int64_t step = 0;
  double train_seconds = 0;  ///< training wall-clock at this point (evaluation excluded)
  double train_loss = 0;     ///< mean training loss over the epoch
  double test_accuracy = 0;
  double epochs = 0;  ///< epochs of training at this point, fractional (2.5: halfway through the third)
};

struct Result {
  std::string name = "fasttrain";
  double test_accuracy = std::nan("");
  double final_train_loss = std::nan("");
  std::int64_t epochs = 0;
  std::int64_t steps = 0;
  std::int64_t samples = 0;
  double train_seconds = 0;  ///< wall-clock of the training steps (data waits included, evaluation excluded)
  double eval_seconds = 0;   ///< wall-clock spent evaluating
  double samples_per_second = 0;
  std::optional<double> target_accuracy;
  std::optional<double> time_to_target_seconds;  ///< training seconds when the target was first reached
  std::string stop_reason;                       ///< "budget" or "target"
  std::int64_t rollbacks = 0;                    ///< divergences recovered by rolling back (FitOptions::on_divergence)
  std::string resumed_from;                      ///< the checkpoint this run resumed from, if any
  std::vector<EvalRecord> history;
  /// Extra fields for the JSON line: (key, value already encoded as JSON -- a number, or a
  /// string passed through json::quote).
  std::vector<std::pair<std::string, std::string>> extra;

  std::string json() const {
    json::object o;
    o.add("name", name)
        .add("test_accuracy", test_accuracy)
        .add("samples_per_second", samples_per_second)
        .add("train_seconds", train_seconds)
        .add("eval_seconds", eval_seconds)
        .add("epochs", epochs)
        .add("steps", steps)
        .add("final_train_loss", final_train_loss)
        .add("stop_reason", stop_reason);
    if (target_accuracy) o.add("target_accuracy", *target_accuracy).add("time_to_target_seconds", time_to_target_seconds);
    if (rollbacks > 0) o.add("rollbacks", rollbacks);
    if (!resumed_from.empty()) o.add("resumed_from", resumed_from);
    for (const auto& [k, v] : extra) o.raw(k, v);
    return o.str();
  }
};

/// Saves or restores a run's history (for checkpoints: io::StateWriter / io::StateReader),
/// one packed column per field.
template <class Ar>
void archive_history(Ar& ar, std::vector<EvalRecord>& history) {
  std::vector<std::int64_t> epochs, steps;
  std::vector<double> seconds, losses, accuracies, fractional;
  if constexpr (Ar::saving)
    for (const auto& h : history) {
      fractional.push_back(h.epochs);
      epochs.push_back(h.epoch);
      steps.push_back(h.step);
      seconds.push_back(h.train_seconds);
      losses.push_back(h.train_loss);
      accuracies.push_back(h.test_accuracy);
    }
  ar("history.epoch", epochs);
  ar("history.step", steps);
  ar("history.train_seconds", seconds);
  ar("history.train_loss", losses);
  ar("history.test_accuracy", accuracies);
  ar("history.epochs", fractional);
  if constexpr (!Ar::saving) {
    const auto n = epochs.size();
    if (steps.size() != n || seconds.size() != n || losses.size() != n || accuracies.size() != n ||
        fractional.size() != n)
      ar.invalid("the history's columns have different lengths");
    history.clear();
    for (std::size_t i = 0; i < n; ++i)
      history.push_back({epochs[i], steps[i], seconds[i], losses[i], accuracies[i], fractional[i]});
  }
}

}  // namespace fasttrain
