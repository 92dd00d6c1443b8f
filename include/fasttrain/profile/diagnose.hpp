// fasttrain/profile/diagnose.hpp -- which bottleneck binds a profiled run, the evidence, and
// the methods the survey's mitigation table suggests for it.
//
//   const auto machine = profile::Machine::probe();          // GEMM rate, memory size
//   profile::Diagnosis d = profile::diagnose(prof.profile(), machine);
//   std::cout << d.report();                                  // bottleneck, evidence, advice
//
// The decision, in this order (each threshold is a field of Thresholds):
// 1. memory capacity: the peak resident memory is at least `capacity_share` (0.85) of the
//    machine's memory;
// 2. data loading: the Trainer waited for batches at least `data_share` (0.25) of the
//    training seconds -- the loader's prefetch thread does not keep up with the compute;
// 3. communication: dist::DataParallel's hooks (the all-reduce) take at least `comm_share`
//    (0.25) of the training seconds;
// 4. otherwise the network's own passes bind: compute when forward + backward reach at least
//    `compute_efficiency` (0.25) of the machine's measured single-precision GEMM rate, memory
//    bandwidth when they run below it (element-wise work and data movement dominate: a low
//    arithmetic intensity, in roofline terms).
// Besides the binding bottleneck, the report names any method whose hooks take at least
// `method_share` (0.15) of the training time, and any method of the recipe that relieves a
// bottleneck that does not bind (it costs accuracy or time for nothing here).
//
// The advice is the survey's mitigation table (Bartoldson, Kailkhura, Blalock 2022, Sec. 6;
// docs/profiling.md) restricted to what fasttrain implements, each with its taxonomy cell.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include "fasttrain/profile/profiler.hpp"

namespace fasttrain::profile {

enum class Bottleneck { data_loading, compute, memory_bandwidth, memory_capacity, communication };

inline const char* bottleneck_name(Bottleneck b) {
  switch (b) {
    case Bottleneck::data_loading: return "data loading";
    case Bottleneck::compute: return "compute";
    case Bottleneck::memory_bandwidth: return "memory bandwidth";
    case Bottleneck::memory_capacity: return "memory capacity";
    case Bottleneck::communication: return "communication";
  }
  return "?";
}

/// What the machine can do, measured or read once.
struct Machine {
  double gemm_flops_per_second = 0;  ///< best of three 1024^3 single-precision GEMMs, on the current thread count
  double memory_bytes = 0;           ///< MemTotal
  double available_bytes = 0;        ///< MemAvailable when probed

  /// Measures the GEMM rate with backend B (4 GEMMs of 2 GFLOP: tens of ms on a desktop
  /// core) and reads /proc/meminfo.
  template <class B = default_backend>
  static Machine probe() {
    Machine m;
    using matrix = typename B::matrix;
    const typename B::index n = 1024;
    matrix a = matrix::Random(n, n), b = matrix::Random(n, n), c = matrix::Zero(n, n);
    double best = 1e30;
    for (int rep = 0; rep < 4; ++rep) {  // the first warms the caches and threads
      const auto t0 = std::chrono::steady_clock::now();
      B::gemm(false, false, 1.f, a, b, 0.f, c);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    volatile float sink = c(0, 0);
    (void)sink;
    m.gemm_flops_per_second = best > 0 ? 2.0 * static_cast<double>(n) * n * n / best : 0;
    std::ifstream f("/proc/meminfo");
    std::string key;
    double kb = 0;
    std::string unit;
    while (f >> key >> kb) {
      std::getline(f, unit);
      if (key == "MemTotal:") m.memory_bytes = kb * 1024;
      if (key == "MemAvailable:") m.available_bytes = kb * 1024;
    }
    return m;
  }
};

struct Thresholds {
  double capacity_share = 0.85;
  double data_share = 0.25;
  double comm_share = 0.25;
  double compute_efficiency = 0.25;
  double method_share = 0.15;
};

/// One method to try, from the mitigation table.
struct Suggestion {
  std::string method;    ///< fasttrain's name ("DataEchoing")
  std::string taxonomy;  ///< its cell: "data / retrofit"
  std::string why;
  bool in_recipe = false;  ///< already in the profiled recipe
};

struct Diagnosis {
  Bottleneck binding = Bottleneck::compute;
  std::vector<std::string> evidence;  ///< the measurements behind the verdict
  std::vector<Suggestion> advice;     ///< what relieves the binding bottleneck
  std::vector<std::string> notes;     ///< expensive methods; methods aimed at a bottleneck that does not bind

  /// A person-readable report (Markdown).
  std::string report() const {
    std::ostringstream o;
    o << "**Bottleneck: " << bottleneck_name(binding) << "**\n\nEvidence:\n";
    for (const auto& e : evidence) o << "- " << e << "\n";
    o << "\nMethods that relieve it (survey's mitigation table):\n";
    for (const auto& s : advice)
      o << "- `" << s.method << "` (" << s.taxonomy << ")" << (s.in_recipe ? " [in the recipe]" : "") << ": " << s.why
        << "\n";
    if (!notes.empty()) {
      o << "\nAlso:\n";
      for (const auto& n : notes) o << "- " << n << "\n";
    }
    return o.str();
  }
  std::string json() const {
    std::ostringstream o;
    o << "{\"bottleneck\":" << json::quote(bottleneck_name(binding)) << ",\"advice\":[";
    for (std::size_t i = 0; i < advice.size(); ++i) o << (i ? "," : "") << json::quote(advice[i].method);
    o << "],\"evidence\":[";
    for (std::size_t i = 0; i < evidence.size(); ++i) o << (i ? "," : "") << json::quote(evidence[i]);
    o << "]}";
    return o.str();
  }
};

namespace detail {
struct TableEntry {
  Bottleneck target;
  const char* method;
  const char* taxonomy;
  const char* why;
};
// The survey's mitigation table (Sec. 6, "Table 3"), as fasttrain implements it.
inline const std::vector<TableEntry>& mitigation_table() {
  static const std::vector<TableEntry> t{
      {Bottleneck::data_loading, "DataEchoing", "data / retrofit",
       "trains on each loaded batch k times: k steps per loaded batch while the loader catches up"},
      {Bottleneck::data_loading, "DataPruning", "data / remove", "fewer examples per epoch: fewer to load and augment"},
      {Bottleneck::data_loading, "MixUp / CutMix / RandAugment", "data / replace",
       "move augmentation off the loader thread onto the idle training thread (before_forward)"},
      {Bottleneck::data_loading, "SAM", "optimization / retrofit",
       "spends the idle compute on a sharper-minimum step; may need fewer epochs"},
      {Bottleneck::compute, "ProgressiveResizing", "data / restrict", "early epochs at low resolution: fewer FLOPs per step"},
      {Bottleneck::compute, "SelectiveBackprop", "data / remove", "backward only on the high-loss part of each batch"},
      {Bottleneck::compute, "LayerFreezing", "model / remove", "no backward through frozen early layers"},
      {Bottleneck::compute, "StochasticDepth", "model / remove", "skips residual blocks per step"},
      {Bottleneck::compute, "Factorize", "model / restrict", "low-rank replacements of large Linear / Conv2d layers"},
      {Bottleneck::compute, "BatchSizeWarmup / LabelSmoothing / EMA", "optimization",
       "fewer epochs to the target (better use of each step)"},
      {Bottleneck::memory_bandwidth, "GhostBatchNorm", "model / replace",
       "normalisation over small ghost batches (replace a bandwidth-heavy op)"},
      {Bottleneck::memory_bandwidth, "Factorize", "model / restrict", "smaller weight matrices to stream"},
      {Bottleneck::memory_bandwidth, "a larger batch (data::LoaderOptions::batch_size)", "implementation",
       "more arithmetic per byte of weights moved"},
      {Bottleneck::memory_capacity, "Factorize", "model / restrict", "fewer parameters and optimizer state"},
      {Bottleneck::memory_capacity, "LayerFreezing", "model / remove", "frozen layers keep no gradients to apply"},
      {Bottleneck::memory_capacity, "optim::SGD instead of AdamW", "optimization / replace",
       "one state buffer per parameter instead of two"},
      {Bottleneck::memory_capacity, "a smaller FitOptions::eval_chunk / batch size", "implementation",
       "bounds the activations held at once"},
      {Bottleneck::communication, "LARS / LAMB", "optimization / replace", "large batches: fewer steps, fewer all-reduces"},
      {Bottleneck::communication, "LayerFreezing", "model / remove", "frozen layers' gradients need no all-reduce"},
  };
  return t;
}
// The bottleneck a recipe method relieves, for the "aimed elsewhere" note.
inline bool aims_at(const std::string& method, Bottleneck& b) {
  struct A {
    const char* m;
    Bottleneck b;
  };
  static const A aims[] = {{"ProgressiveResizing", Bottleneck::compute}, {"SelectiveBackprop", Bottleneck::compute},
                           {"StochasticDepth", Bottleneck::compute},     {"DataEchoing", Bottleneck::data_loading},
                           {"GhostBatchNorm", Bottleneck::memory_bandwidth}};
  for (const auto& a : aims)
    if (method == a.m) {
      b = a.b;
      return true;
    }
  return false;
}
inline std::string pct(double x) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(1) << 100 * x << "%";
  return o.str();
}
inline std::string num(double x, int digits = 3) {
  std::ostringstream o;
  o << std::setprecision(digits) << x;
  return o.str();
}
}  // namespace detail

/// The binding bottleneck of the profiled run `p` on `machine`, with evidence and advice.
inline Diagnosis diagnose(const Profile& p, const Machine& machine, const Thresholds& t = {}) {
  using detail::num;
  using detail::pct;
  Diagnosis d;
  const double train = p.train_seconds;
  const double data = p.phase(Phase::data), fwd = p.phase(Phase::forward), bwd = p.phase(Phase::backward);
  double comm = 0;
  for (const auto& m : p.method_seconds)
    if (m.first == "DataParallel") comm += m.second;
  const double rate = p.compute_flops_per_second();
  const double efficiency = machine.gemm_flops_per_second > 0 ? rate / machine.gemm_flops_per_second : 0;
  const double mem_share = machine.memory_bytes > 0 ? p.peak_rss_bytes / machine.memory_bytes : 0;

  d.evidence.push_back("waited for data " + pct(p.share(data)) + " of the " + num(train) + " s of training (" +
                       num(p.steps ? 1000 * data / static_cast<double>(p.steps) : 0) + " ms per step)");
  d.evidence.push_back("forward + backward " + pct(p.share(fwd + bwd)) + " of training, at " + num(rate / 1e9) +
                       " GFLOP/s = " + pct(efficiency) + " of the measured GEMM rate (" +
                       num(machine.gemm_flops_per_second / 1e9) + " GFLOP/s)");
  d.evidence.push_back("peak resident memory " + num(p.peak_rss_bytes / 1e6) + " MB = " + pct(mem_share) +
                       " of the machine's " + num(machine.memory_bytes / 1e9) + " GB");
  if (comm > 0) d.evidence.push_back("DataParallel (gradient all-reduce) " + pct(p.share(comm)) + " of training");

  if (mem_share >= t.capacity_share) d.binding = Bottleneck::memory_capacity;
  else if (p.share(data) >= t.data_share) d.binding = Bottleneck::data_loading;
  else if (p.share(comm) >= t.comm_share) d.binding = Bottleneck::communication;
  else if (efficiency >= t.compute_efficiency) d.binding = Bottleneck::compute;
  else d.binding = Bottleneck::memory_bandwidth;

  auto in_recipe = [&](const std::string& m) {
    for (const auto& r : p.method_seconds)
      if (m.find(r.first) != std::string::npos) return true;
    return false;
  };
  for (const auto& e : detail::mitigation_table())
    if (e.target == d.binding) d.advice.push_back({e.method, e.taxonomy, e.why, in_recipe(e.method)});

  for (const auto& m : p.method_seconds) {
    if (p.share(m.second) >= t.method_share)
      d.notes.push_back("method " + m.first + " takes " + pct(p.share(m.second)) + " of the training time");
    Bottleneck aim{};
    if (detail::aims_at(m.first, aim) && aim != d.binding)
      d.notes.push_back("method " + m.first + " relieves " + bottleneck_name(aim) + ", which does not bind here");
  }
  return d;
}

}  // namespace fasttrain::profile
