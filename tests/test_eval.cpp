// Tests of eval/ (FLOPs, statistics, the study runner, reports) and profile/ (phase timing,
// diagnosis), and of the Loader's transform they rely on.
#include <doctest/doctest.h>

#include <fasttrain/fasttrain.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fixtures.hpp"

using namespace fasttrain;
using namespace fasttrain::literals;

namespace {
using fixtures::blobs;
using Net = nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>>;

// Records the learning-rate multiplier of every step.
struct LrLog {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::before_step>;
  std::vector<float>* out;
  template <class Ctx>
  void on_before_step(Ctx& ctx) { out->push_back(ctx.lr_multiplier); }
};
// Sleeps in every batch_begin: a method with a known cost.
struct Sleepy {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::batch_begin>;
  static std::string name() { return "Sleepy"; }
  template <class Ctx>
  void on_batch_begin(Ctx&) { std::this_thread::sleep_for(std::chrono::milliseconds(2)); }
};

std::vector<EvalRecord> curve(std::vector<std::pair<double, double>> pts) {
  std::vector<EvalRecord> h;
  std::int64_t e = 0;
  for (auto [s, a] : pts) h.push_back({++e, e * 10, s, 0.5, a});
  return h;
}
}  // namespace

// ---- FLOPs ----------------------------------------------------------------------------------

TEST_CASE("FLOPs: Linear and Conv2d follow the documented formulas exactly") {
  nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 10>> mlp;
  const auto rows = eval::flops_table(mlp, Shape(784));
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].flops.forward == 2.0 * 784 * 256 + 256);
  CHECK(rows[0].flops.backward == 4.0 * 784 * 256 + 256);
  CHECK(rows[0].parameters == 784 * 256 + 256);
  CHECK(rows[1].flops.forward == 256);
  CHECK(rows[2].input == Shape(256));
  const eval::Flops total = eval::flops(mlp, Shape(784));
  CHECK(total.forward == rows[0].flops.forward + rows[1].flops.forward + rows[2].flops.forward);

  nn::Sequential<nn::Conv2d<3, 8, 3, 2, 1>> conv;  // 3x16x16 -> 8x8x8
  const auto c = eval::flops(conv, Shape(3, 16, 16));
  CHECK(c.forward == 2.0 * 8 * 8 * 8 * 3 * 3 * 3 + 8 * 8 * 8);
  CHECK(c.backward == 4.0 * 8 * 8 * 8 * 3 * 3 * 3 + 8 * 8 * 8);
}

TEST_CASE("FLOPs: a residual block counts body, shortcut and the sum; the shape follows the input") {
  using Block = nn::Residual<nn::Sequential<nn::Conv2d<4, 4, 3, 1, 1>, nn::ReLU>>;
  nn::Sequential<Block> net;
  const auto rows = eval::flops_table(net, Shape(4, 6, 6));
  REQUIRE(rows.size() == 4);  // conv, relu, identity shortcut, sum
  CHECK(rows[0].path == "0.body.0");
  CHECK(rows[2].path == "0.shortcut");
  CHECK(rows[3].layer == "Residual (sum)");
  CHECK(rows[3].flops.forward == 4 * 6 * 6);
  // half the image side: a quarter of the convolution's FLOPs (what ProgressiveResizing buys)
  CHECK(eval::flops(net, Shape(4, 3, 3)).forward * 4 == doctest::Approx(eval::flops(net, Shape(4, 6, 6)).forward));
  CHECK_THROWS_AS(eval::flops(net, Shape(3, 6, 6)), shape_error);
  // a network rewritten by model_for (a type derived from the Sequential) is walked the same
  methods::model_for<nn::Sequential<Block>> same;
  CHECK(eval::flops(same, Shape(4, 6, 6)).total() == eval::flops(net, Shape(4, 6, 6)).total());
  methods::model_for<nn::Sequential<nn::Conv2d<4, 4, 3, 2, 1>>, methods::BlurPool<>> blurred;
  const auto brows = eval::flops_table(blurred, Shape(4, 8, 8));
  REQUIRE(brows.size() == 2);  // the blur, then the strided convolution
  CHECK(brows[0].layer.rfind("BlurPool2d", 0) == 0);
  CHECK(!brows[0].estimated);
  CHECK(eval::flops_markdown(rows).find("| total |") != std::string::npos);
}

// ---- statistics -------------------------------------------------------------------------------

TEST_CASE("median_interval: order-statistic intervals with their real coverage") {
  auto r3 = eval::median_interval({3, 1, 2});
  CHECK(r3.median == 2);
  CHECK(r3.low == 1);
  CHECK(r3.high == 3);
  CHECK(r3.coverage == doctest::Approx(0.75));
  auto r4 = eval::median_interval({4, 1, 2, 3});
  CHECK(r4.median == 2.5);
  auto r10 = eval::median_interval({10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 0.95);
  CHECK(r10.low == 2);  // k = 2: coverage 1 - 2 * 11/1024
  CHECK(r10.high == 9);
  CHECK(r10.coverage == doctest::Approx(1 - 22.0 / 1024));
  auto never = eval::median_interval({5, eval::never, eval::never});
  CHECK(std::isinf(never.median));
  CHECK(eval::median_interval({5, 6, eval::never}).median == 6);
  CHECK_THROWS_AS(eval::median_interval({1, std::nan("")}), config_error);
  CHECK_THROWS_AS(eval::median_interval({1, 2}, 1.5), config_error);
}

TEST_CASE("time_to and epochs_to read the first evaluation at or above the level") {
  const auto h = curve({{10, 0.5}, {20, 0.9}, {30, 0.85}, {40, 0.95}});
  CHECK(eval::time_to(h, 0.9) == 20);
  CHECK(eval::epochs_to(h, 0.9) == 2);
  CHECK(eval::time_to(h, 0.95) == 40);
  CHECK(std::isinf(eval::time_to(h, 0.96)));
}

TEST_CASE("pareto_frontier keeps exactly the non-dominated points") {
  const auto f = eval::pareto_frontier({{10, 0.8}, {20, 0.79}, {15, 0.85}, {30, 0.9}, {30, 0.88}, {5, 0.7}});
  REQUIRE(f.size() == 4);
  CHECK(f[0].seconds == 5);
  CHECK(f[1].seconds == 10);
  CHECK(f[2].seconds == 15);
  CHECK(f[3].accuracy == 0.9);
}

// ---- the study runner -------------------------------------------------------------------------

TEST_CASE("Study: runs every seed x budget x recipe, interleaved, and reads time to target off the curves") {
  std::vector<std::string> calls;
  auto fake = [&](double speed) {
    return [&calls, speed](const eval::RunSpec& s) {
      calls.push_back(s.recipe + "/" + std::to_string(s.seed) + "/" + s.budget.str());
      Result r;
      const double E = s.budget.value, jitter = static_cast<double>(s.seed);
      // accuracy climbs to 0.9 + 0.01 * E at the budget's end: longer budgets end higher
      for (int e = 1; e <= static_cast<int>(E); ++e)
        r.history.push_back({e, e * 10, (10.0 * e + jitter) / speed, 0.3, 0.8 + (0.1 + 0.01 * E) * e / E});
      r.test_accuracy = r.history.back().test_accuracy;
      r.train_seconds = r.history.back().train_seconds;
      r.stop_reason = "budget";
      return r;
    };
  };
  eval::Study study({.seeds = {1, 2, 3}, .budgets = {2_ep, 4_ep}, .target = 0.9, .baseline = "base",
                     .levels = {0.85}, .verbose = false});
  study.add("base", fake(1.0)).add("fast", fake(2.0));
  study.run();
  REQUIRE(calls.size() == 12);
  CHECK(calls[0] == "base/1/2ep");
  CHECK(calls[1] == "fast/1/2ep");  // recipes alternate: drift hits both
  CHECK(calls[2] == "base/1/4ep");
  study.run();  // nothing new to run
  CHECK(calls.size() == 12);

  const eval::Summary s = study.summarize();
  const auto& base = s.recipe("base");
  // budget 2: 0.8 + 0.12 * e / 2 reaches 0.9 at e = 2 (20 + seed s); budget 4: 0.8 + 0.14 e / 4
  // reaches 0.9 at e = 3 (30 + seed s): the earliest is the 2-epoch budget's
  CHECK(base.seconds_per_seed == std::vector<double>{21, 22, 23});
  CHECK(base.seconds_to_target.median == 22);
  CHECK(base.epochs_to_target.median == 2);
  const auto& fast = s.recipe("fast");
  CHECK(fast.seconds_to_target.median == 11);
  CHECK(fast.speedup == doctest::Approx(2.0));
  CHECK(fast.speedup_low == doctest::Approx(21.0 / 11.5));
  CHECK(fast.speedup_high == doctest::Approx(23.0 / 10.5));
  REQUIRE(fast.speedup_at_levels.size() == 1);
  CHECK(fast.speedup_at_levels[0].second == doctest::Approx(2.0));
  REQUIRE(base.budgets.size() == 2);
  CHECK(base.budgets[1].accuracy == doctest::Approx(0.94));
  CHECK(base.budgets[1].seconds == 42);
  CHECK(base.frontier.size() == 2);  // the longer budget is slower and more accurate
  CHECK_THROWS_AS((void)s.recipe("nope"), config_error);

  const std::string md = s.markdown();
  CHECK(md.find("| fast | 11.0 [10.5, 11.5]") != std::string::npos);
  CHECK(md.find("2.00x") != std::string::npos);
  const std::string svg = study.svg();
  CHECK(svg.rfind("<svg", 0) == 0);
  std::size_t polylines = 0;
  for (auto p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++polylines;
  CHECK(polylines == 12 + 2);  // every run, and each recipe's frontier
  const auto csv_path = (std::filesystem::temp_directory_path() / "fasttrain_study_test.csv").string();
  study.write_csv(csv_path);
  std::ifstream csv(csv_path);
  std::string line;
  int lines = 0;
  while (std::getline(csv, line)) ++lines;
  CHECK(lines == 1 + 3 * (2 + 4) * 2);  // header + every evaluation of every run
}

TEST_CASE("Study rejects what it cannot measure") {
  CHECK_THROWS_AS(eval::Study({.budgets = {}}), config_error);
  CHECK_THROWS_AS(eval::Study({.budgets = {Duration{0.5, Unit::dur}}}), config_error);
  CHECK_THROWS_AS(eval::Study({.budgets = {1_ep}, .target = 1.5}), config_error);
  eval::Study s({.seeds = {1}, .budgets = {1_ep}, .baseline = "missing", .verbose = false});
  CHECK_THROWS_AS(s.run(), config_error);  // no recipes
  s.add("a", [](const eval::RunSpec&) { return Result{}; });
  CHECK_THROWS_AS(s.add("a", [](const eval::RunSpec&) { return Result{}; }), config_error);
  // a misnamed baseline is caught before any run is made
  CHECK_THROWS_WITH_AS(s.run(), doctest::Contains("baseline 'missing'"), config_error);
  Result done;
  done.history = curve({{1, 0.95}});
  s.add_run({{"a", 1, 1_ep, std::nullopt}, done});
  CHECK_THROWS_WITH_AS(s.summarize(), doctest::Contains("baseline 'missing'"), config_error);
  eval::Study s2({.seeds = {1}, .budgets = {1_ep}, .verbose = false});
  s2.add("a", [](const eval::RunSpec&) { return Result{}; });
  CHECK_THROWS_WITH_AS(s2.run(), doctest::Contains("without evaluations"), config_error);
}

TEST_CASE("Study with real training: each budget's schedule decays fully, and stop_at reaches the Trainer") {
  const auto train = blobs(300, 1), test = blobs(150, 2);
  std::vector<std::vector<float>> lrs;
  eval::Study study({.seeds = {1, 2}, .budgets = {1_ep, 3_ep}, .target = 0.9, .stop_at_target = false, .verbose = false});
  study.add("sgd", [&](const eval::RunSpec& s) {
    Net net;
    net.reset_parameters(s.seed);
    data::Loader loader(train, {.batch_size = 30, .seed = s.seed, .prefetch = 0});
    lrs.emplace_back();
    Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, LrLog{&lrs.back()}};
    return t.fit(loader, test, {.max_duration = s.budget, .target_accuracy = s.stop_at, .progress = ProgressMode::never},
                 schedule::cosine());
  });
  study.run();
  REQUIRE(lrs.size() == 4);
  CHECK(lrs[0].size() == 10);  // seed 1, 1 epoch of 10 batches
  CHECK(lrs[1].size() == 30);  // seed 1, 3 epochs
  // the last step of each budget is at the end of its own cosine, not part-way down a longer one
  CHECK(lrs[0].back() < 0.03f);
  CHECK(lrs[1].back() < 0.01f);
  CHECK(lrs[1][9] > 0.7f);  // the 3-epoch run is still high where the 1-epoch one ended
  const auto s = study.summarize();
  CHECK(s.recipe("sgd").seconds_to_target.finite());
  CHECK(s.recipe("sgd").budgets[1].accuracy > 0.9);
}

TEST_CASE("FitOptions::eval_interval: evaluations within epochs, an earlier stop, evaluation time excluded") {
  const auto train = blobs(300, 1), test = blobs(150, 2);
  Net net;
  net.reset_parameters(1);
  data::Loader loader(train, {.batch_size = 30, .seed = 1, .prefetch = 0});
  Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}};
  FitOptions opt{.max_duration = 2_ep, .progress = ProgressMode::never};
  opt.eval_interval = Duration{0.5, Unit::epoch};
  Result r = t.fit(loader, test, opt);
  REQUIRE(r.history.size() == 4);  // steps 5, 10 (epoch end), 15, 20 (epoch end): no double evaluation
  CHECK(r.history[0].step == 5);
  CHECK(r.history[0].epoch == 0);
  CHECK(r.history[0].epochs == 0.5);  // fractional epochs: what eval::epochs_to reads
  CHECK(r.history[1].epochs == 1.0);
  CHECK(eval::epochs_to(r.history, 0.0) == 0.5);
  CHECK(r.history[1].step == 10);
  CHECK(r.history[2].step == 15);
  CHECK(r.history[3].step == 20);
  for (std::size_t i = 1; i < r.history.size(); ++i) CHECK(r.history[i].train_seconds >= r.history[i - 1].train_seconds);

  net.reset_parameters(1);
  opt.eval_interval = Duration{3.0, Unit::batch};
  opt.target_accuracy = 0.8;
  r = t.fit(loader, test, opt);
  CHECK(r.stop_reason == "target");
  CHECK(r.steps % 3 == 0);  // stopped at an interval's evaluation,
  CHECK(r.steps < 10);      // before the first epoch's end
  CHECK(r.history.back().test_accuracy >= 0.8);
  CHECK(r.time_to_target_seconds.value() == r.train_seconds);

  opt.eval_interval = Duration{1.0, Unit::second};
  CHECK_THROWS_AS(t.fit(loader, test, opt), config_error);
  opt.eval_interval = Duration{-1.0, Unit::batch};
  CHECK_THROWS_AS(t.fit(loader, test, opt), config_error);
}

// ---- profiling --------------------------------------------------------------------------------

TEST_CASE("Profiler: every phase and method is timed; FLOPs follow the samples actually trained") {
  const auto train = blobs(256, 1), test = blobs(64, 2);
  Net net;
  net.reset_parameters(1);
  data::Loader loader(train, {.batch_size = 32, .seed = 1});
  Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, Sleepy{}, profile::Profiler{}};
  static_assert(decltype(t)::profiled);
  const Result r = t.fit(loader, test, {.max_duration = 2_ep, .progress = ProgressMode::never});
  const profile::Profile& p = t.method<profile::Profiler>().profile();
  CHECK(p.steps == r.steps);
  CHECK(p.samples == r.samples);
  CHECK(p.train_seconds == r.train_seconds);
  CHECK(p.train_flops == doctest::Approx(static_cast<double>(r.samples) * eval::flops(net, Shape(4)).total()));
  REQUIRE(p.method_seconds.size() == 1);  // the Profiler does not time itself
  CHECK(p.method_seconds[0].first == "Sleepy");
  CHECK(p.method_seconds[0].second >= 0.002 * static_cast<double>(r.steps));
  CHECK(p.phase(Phase::forward) > 0);
  CHECK(p.phase(Phase::backward) > 0);
  CHECK(p.phase(Phase::step) > 0);
  CHECK(p.phase(Phase::eval) > 0);
  double timed = p.methods_total() + p.other_seconds();
  for (Phase ph : {Phase::data, Phase::forward, Phase::loss, Phase::backward, Phase::step, Phase::checks})
    timed += p.phase(ph);
  CHECK(timed == doctest::Approx(p.train_seconds).epsilon(1e-6));  // phases partition training time
  CHECK(p.table().find("method Sleepy") != std::string::npos);
  CHECK(p.json().find("\"Sleepy\":") != std::string::npos);

  Trainer plain{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}};
  static_assert(!decltype(plain)::profiled);  // no Profiler: no timing code at all
}

TEST_CASE("diagnose: a loader slowed by its transform is diagnosed as data-bound, with DataEchoing advised") {
  const auto train = blobs(256, 1), test = blobs(64, 2);
  Net net;
  net.reset_parameters(1);
  data::Loader loader(train, {.batch_size = 32, .seed = 1, .prefetch = 1,
                              .transform = [](data::Batch<>&, Rng&) {
                                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                              }});
  Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, profile::Profiler{}};
  t.fit(loader, test, {.max_duration = 1_ep, .progress = ProgressMode::never});
  const auto& p = t.method<profile::Profiler>().profile();
  CHECK(p.share(p.phase(Phase::data)) > 0.5);
  const auto d = profile::diagnose(p, profile::Machine::probe());
  CHECK(d.binding == profile::Bottleneck::data_loading);
  REQUIRE(!d.advice.empty());
  CHECK(d.advice[0].method == "DataEchoing");
  CHECK(d.report().find("**Bottleneck: data loading**") != std::string::npos);
  CHECK(d.json().find("\"bottleneck\":\"data loading\"") != std::string::npos);
}

TEST_CASE("diagnose: the thresholds decide between capacity, data, communication, compute and bandwidth") {
  profile::Profile p;
  p.train_seconds = 10;
  p.steps = 100;
  p.phase_seconds[static_cast<std::size_t>(Phase::forward)] = 3;
  p.phase_seconds[static_cast<std::size_t>(Phase::backward)] = 5;
  p.phase_seconds[static_cast<std::size_t>(Phase::data)] = 1;
  p.train_flops = 8e9 * 10;  // 10 GFLOP/s in forward + backward
  p.peak_rss_bytes = 1e9;
  p.method_seconds = {{"ProgressiveResizing", 0.5}};
  profile::Machine m{.gemm_flops_per_second = 20e9, .memory_bytes = 16e9, .available_bytes = 8e9};
  auto d = profile::diagnose(p, m);
  CHECK(d.binding == profile::Bottleneck::compute);  // 50% of the GEMM rate
  CHECK(d.advice[0].method == "ProgressiveResizing");
  CHECK(d.advice[0].in_recipe);
  m.gemm_flops_per_second = 100e9;  // 10% of it: the passes are bound by memory traffic
  d = profile::diagnose(p, m);
  CHECK(d.binding == profile::Bottleneck::memory_bandwidth);
  bool noted = false;  // ProgressiveResizing cuts FLOPs, which do not bind here
  for (const auto& n : d.notes) noted |= n.find("ProgressiveResizing relieves compute") != std::string::npos;
  CHECK(noted);
  p.method_seconds.push_back({"DataParallel", 3});
  CHECK(profile::diagnose(p, m).binding == profile::Bottleneck::communication);
  p.phase_seconds[static_cast<std::size_t>(Phase::data)] = 3;
  CHECK(profile::diagnose(p, m).binding == profile::Bottleneck::data_loading);
  p.peak_rss_bytes = 15e9;
  CHECK(profile::diagnose(p, m).binding == profile::Bottleneck::memory_capacity);
}

// ---- the Loader's transform -------------------------------------------------------------------

TEST_CASE("Loader transform: deterministic per (seed, epoch, batch), the same with or without prefetch") {
  const auto ds = blobs(100, 3);
  auto noise = [](data::Batch<>& b, Rng& rng) {
    for (Eigen::Index i = 0; i < b.inputs.data.size(); ++i) b.inputs.data.data()[i] += rng.normal();
  };
  data::Loader a(ds, {.batch_size = 32, .seed = 5, .prefetch = 2, .transform = noise});
  data::Loader b(ds, {.batch_size = 32, .seed = 5, .prefetch = 0, .transform = noise});
  data::Loader plain(ds, {.batch_size = 32, .seed = 5, .prefetch = 0});
  data::Batch<> x, y, z;
  for (std::int64_t e = 0; e < 2; ++e) {
    a.start_epoch(e);
    b.start_epoch(e);
    plain.start_epoch(e);
    while (a.next(x)) {
      REQUIRE(b.next(y));
      REQUIRE(plain.next(z));
      CHECK(x.inputs.data == y.inputs.data);
      CHECK(x.indices == z.indices);        // the order does not depend on the transform
      CHECK(x.inputs.data != z.inputs.data);  // and the transform did act
    }
  }
  data::Loader bad(ds, {.batch_size = 32, .prefetch = 0, .transform = [](data::Batch<>& b, Rng&) {
                          b.inputs.resize(Shape(2), b.inputs.batch());
                        }});
  CHECK_THROWS_WITH_AS(bad.next(x), doctest::Contains("may change values only"), config_error);
}
