// The Trainer: the exact event sequence, reverse order on after_* events, method
// ordering traits, stopping rules, divergence errors, determinism, and the effect of
// the two methods LabelSmoothing and GradientClipping.
#include <doctest/doctest.h>

#include <fasttrain/fasttrain.hpp>

#include "fixtures.hpp"
#include <string>
#include <vector>

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;

namespace {

using fixtures::blobs;

using Net = nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>>;

// Records every event it sees, tagged with its id.
template <int Id>
struct Spy {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::all_events;
  std::vector<std::string>* log;
  void rec(const char* e) { log->push_back(std::string(e) + (Id ? "#" + std::to_string(Id) : "")); }
  void on_fit_begin(auto&) { rec("fit_begin"); }
  void on_epoch_begin(auto&) { rec("epoch_begin"); }
  void on_batch_begin(auto&) { rec("batch_begin"); }
  void on_before_forward(auto&) { rec("before_forward"); }
  void on_after_forward(auto&) { rec("after_forward"); }
  void on_before_loss(auto&) { rec("before_loss"); }
  void on_after_loss(auto&) { rec("after_loss"); }
  void on_before_backward(auto&) { rec("before_backward"); }
  void on_after_backward(auto&) { rec("after_backward"); }
  void on_before_step(auto&) { rec("before_step"); }
  void on_after_step(auto&) { rec("after_step"); }
  void on_batch_end(auto&) { rec("batch_end"); }
  void on_epoch_end(auto&) { rec("epoch_end"); }
  void on_eval_begin(auto&) { rec("eval_begin"); }
  void on_eval_end(auto&) { rec("eval_end"); }
  void on_fit_end(auto&) { rec("fit_end"); }
};

FitOptions quiet(Duration d) {
  FitOptions o;
  o.max_duration = d;
  o.progress = ProgressMode::never;
  return o;
}

}  // namespace

TEST_CASE("Trainer emits the exact event sequence") {
  auto train = blobs(8, 1), test = blobs(6, 2);
  data::Loader loader(train, {.batch_size = 4, .shuffle = false, .prefetch = 0});
  Net net;
  net.reset_parameters(1);
  std::vector<std::string> log;
  Trainer trainer{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, Spy<0>{&log}};
  trainer.fit(loader, test, quiet(2_ep));

  const std::vector<std::string> step = {"batch_begin",    "before_forward", "after_forward", "before_loss",
                                         "after_loss",     "before_backward", "after_backward", "before_step",
                                         "after_step",     "batch_end"};
  std::vector<std::string> expect = {"fit_begin"};
  for (int e = 0; e < 2; ++e) {
    expect.push_back("epoch_begin");
    for (int b = 0; b < 2; ++b) expect.insert(expect.end(), step.begin(), step.end());
    expect.insert(expect.end(), {"epoch_end", "eval_begin", "eval_end"});
  }
  expect.push_back("fit_end");
  CHECK(log == expect);
}

TEST_CASE("after_* events visit methods in reverse order, before_* in list order") {
  auto train = blobs(4, 1);
  data::Loader loader(train, {.batch_size = 4, .prefetch = 0});
  Net net;
  net.reset_parameters(1);
  std::vector<std::string> log;
  Trainer trainer{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, Spy<1>{&log}, Spy<2>{&log}};
  trainer.fit(loader, nullptr, quiet(1_ba));
  auto pos = [&](const std::string& s) { return std::find(log.begin(), log.end(), s) - log.begin(); };
  CHECK(pos("before_loss#1") < pos("before_loss#2"));
  CHECK(pos("after_loss#2") < pos("after_loss#1"));
  CHECK(pos("before_step#1") < pos("before_step#2"));
  CHECK(pos("after_step#2") < pos("after_step#1"));
  CHECK(pos("after_forward#2") < pos("after_forward#1"));
  CHECK(pos("batch_end#1") < pos("batch_end#2"));
}

namespace {
struct Second;
struct First {
  static constexpr taxonomy tag{component::data, action::reorder};
  using events = fasttrain::events<event::batch_begin>;
  std::vector<std::string>* log;
  void on_batch_begin(auto&) { log->push_back("First"); }
};
struct Second {
  static constexpr taxonomy tag{component::data, action::reorder};
  using events = fasttrain::events<event::batch_begin>;
  using runs_after = type_list<First>;
  std::vector<std::string>* log;
  void on_batch_begin(auto&) { log->push_back("Second"); }
};
}  // namespace

TEST_CASE("methods are sorted by runs_after / runs_before, whatever order the user lists them in") {
  auto train = blobs(4, 1);
  data::Loader loader(train, {.batch_size = 4, .prefetch = 0});
  Net net;
  net.reset_parameters(1);
  std::vector<std::string> log;
  Trainer trainer{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, Second{&log}, First{&log}};
  static_assert(std::is_same_v<decltype(trainer)::methods_tuple, std::tuple<First, Second>>);
  trainer.fit(loader, nullptr, quiet(1_ba));
  CHECK(log == std::vector<std::string>{"First", "Second"});
}

TEST_CASE("Trainer learns separable data and stops at the target accuracy") {
  auto train = blobs(600, 1), test = blobs(300, 2);
  data::Loader loader(train, {.batch_size = 32, .seed = 3, .prefetch = 2});
  Net net;
  net.reset_parameters(7);
  Trainer trainer{net, optim::SGD{{.lr = 0.05f, .momentum = 0.9f, .nesterov = true}}, nn::SoftmaxCrossEntropy{}};
  auto opt = quiet(20_ep);
  opt.target_accuracy = 0.97;
  opt.name = "blobs";
  const Result r = trainer.fit(loader, test, opt, schedule::cosine());
  CHECK(r.test_accuracy >= 0.97);
  CHECK(r.stop_reason == "target");
  REQUIRE(r.time_to_target_seconds.has_value());
  CHECK(*r.time_to_target_seconds <= r.train_seconds);
  CHECK(r.epochs < 20);
  CHECK(r.samples == r.epochs * 600);
  CHECK(r.history.size() == static_cast<std::size_t>(r.epochs));
  const std::string j = r.json();
  CHECK(j.find('\n') == std::string::npos);
  CHECK(j.rfind("{\"name\":\"blobs\",\"test_accuracy\":", 0) == 0);
  for (const char* key : {"\"samples_per_second\":", "\"train_seconds\":", "\"time_to_target_seconds\":"})
    CHECK(j.find(key) != std::string::npos);
}

TEST_CASE("budgets in batches and samples stop mid-epoch exactly") {
  auto train = blobs(100, 1);
  data::Loader loader(train, {.batch_size = 10, .prefetch = 0});
  Net net;
  net.reset_parameters(1);
  Trainer trainer{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}};
  auto r = trainer.fit(loader, nullptr, quiet(25_ba));
  CHECK(r.steps == 25);
  CHECK(r.epochs == 2);
  CHECK(r.stop_reason == "budget");
  r = trainer.fit(loader, nullptr, quiet(Duration{300, Unit::sample}));
  CHECK(r.samples == 300);
}

TEST_CASE("the same seed gives bitwise-identical weights") {
  auto train = blobs(200, 1);
  auto run = [&](std::uint64_t seed) {
    data::Loader loader(train, {.batch_size = 16, .seed = seed, .prefetch = 2});
    Net net;
    net.reset_parameters(seed);
    Trainer trainer{net, optim::SGD{{.lr = 0.05f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
                    methods::LabelSmoothing{0.1f}};
    trainer.fit(loader, nullptr, quiet(3_ep));
    return net.layer<0>().weight;
  };
  CHECK(run(5) == run(5));
  CHECK(run(5) != run(6));
}

namespace {
// Puts a NaN into the inputs of the batch at step `at`.
struct Poison {
  static constexpr taxonomy tag{component::data, action::replace};
  using events = fasttrain::events<event::before_forward>;
  std::int64_t at;
  void on_before_forward(auto& ctx) {
    if (ctx.time.batch == at) ctx.batch.inputs.data(0, 0) = std::nanf("");
  }
};
}  // namespace

TEST_CASE("a NaN loss stops training with an error naming the step and the last finite loss") {
  auto train = blobs(40, 1);
  data::Loader loader(train, {.batch_size = 10, .prefetch = 0});
  Net net;
  net.reset_parameters(1);
  Trainer trainer{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, Poison{3}};
  try {
    trainer.fit(loader, nullptr, quiet(2_ep));
    FAIL("no divergence_error");
  } catch (const divergence_error& e) {
    const std::string m = e.what();
    CHECK(m.find("loss is NaN at step 3") != std::string::npos);
    CHECK(m.find("last finite loss") != std::string::npos);
  }
}

TEST_CASE("fit rejects impossible options") {
  auto train = blobs(10, 1);
  data::Loader loader(train, {.batch_size = 5, .prefetch = 0});
  Net net;
  Trainer trainer{net, optim::SGD{}, nn::SoftmaxCrossEntropy{}};
  CHECK_THROWS_AS(trainer.fit(loader, nullptr, quiet(0_ep)), config_error);
  CHECK_THROWS_AS(trainer.fit(loader, nullptr, quiet(0.5_dur)), config_error);
  auto o = quiet(1_ep);
  o.target_accuracy = 0.9;
  CHECK_THROWS_WITH_AS(trainer.fit(loader, nullptr, o), doctest::Contains("needs a test set"), config_error);
  o.target_accuracy = 1.5;
  CHECK_THROWS_AS(trainer.fit(loader, train, o), config_error);
}

// ---- LabelSmoothing -----------------------------------------------------------------
namespace {
// Sees the targets the loss sees (runs after LabelSmoothing on before_loss) and what
// is left once after_loss has run.
struct TargetProbe {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::before_loss>;
  using runs_after = type_list<methods::LabelSmoothing>;
  B::matrix seen;
  B::labels labels;
  void on_before_loss(auto& ctx) {
    REQUIRE(ctx.targets.soft != nullptr);
    seen = *ctx.targets.soft;
    labels = ctx.batch.labels;
  }
};
struct AfterLossProbe {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::after_loss>;
  using runs_before = type_list<methods::LabelSmoothing>;  // so it runs *after* LabelSmoothing on after_loss
  bool soft_after = true;
  void on_after_loss(auto& ctx) { soft_after = ctx.targets.soft != nullptr; }
};

double mean_confidence(Net& net, const data::Dataset& ds) {
  B::tensor x{ds.features, ds.sample_shape};
  B::matrix p;
  B::softmax_columns(net.forward(x, nn::Mode::eval).data, p);
  return p.colwise().maxCoeff().mean();
}
}  // namespace

TEST_CASE("LabelSmoothing: the loss sees (1-s) one-hot + s/K, restored after the loss") {
  auto train = blobs(12, 1);
  data::Loader loader(train, {.batch_size = 12, .shuffle = false, .prefetch = 0});
  Net net;
  net.reset_parameters(1);
  Trainer trainer{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, TargetProbe{}, AfterLossProbe{},
                  methods::LabelSmoothing{0.3f}};
  trainer.fit(loader, nullptr, quiet(1_ba));
  const auto& probe = trainer.method<TargetProbe>();
  REQUIRE(probe.seen.rows() == 3);
  REQUIRE(probe.seen.cols() == 12);
  for (Eigen::Index j = 0; j < 12; ++j)
    for (Eigen::Index k = 0; k < 3; ++k)
      CHECK(probe.seen(k, j) == doctest::Approx(k == probe.labels[j] ? 0.7f + 0.1f : 0.1f));
  CHECK_FALSE(trainer.method<AfterLossProbe>().soft_after);
  CHECK_THROWS_AS(methods::LabelSmoothing{1.0f}, config_error);
}

TEST_CASE("LabelSmoothing: trained models are less over-confident") {
  auto train = blobs(300, 1);
  auto run = [&](float s) {
    data::Loader loader(train, {.batch_size = 30, .seed = 1, .prefetch = 0});
    Net net;
    net.reset_parameters(4);
    Trainer trainer{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
                    methods::LabelSmoothing{s}};
    trainer.fit(loader, nullptr, quiet(30_ep));
    return mean_confidence(net, train);
  };
  const double plain = run(0.f), smoothed = run(0.3f);
  CHECK(plain > 0.97);
  // With s = 0.3 the optimum puts 0.8 on the true class.
  CHECK(smoothed == doctest::Approx(0.8).epsilon(0.05));
}

// ---- GradientClipping -----------------------------------------------------------------
namespace {
struct GradProbe {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::before_step>;
  using runs_after = type_list<methods::GradientClipping>;
  double norm = 0, max_abs = 0;
  void on_before_step(auto& ctx) {
    double sq = 0;
    max_abs = 0;
    ctx.model.for_each_parameter([&](auto&, auto& g) {
      sq += B::squared_norm(g);
      max_abs = std::max<double>(max_abs, B::max_abs(g));
    });
    norm = std::sqrt(sq);
  }
};
}  // namespace

TEST_CASE("GradientClipping by norm: the step sees a gradient of norm <= threshold, same direction") {
  auto train = blobs(30, 1);
  data::Loader loader(train, {.batch_size = 30, .prefetch = 0});
  Net a, b;
  a.reset_parameters(2);
  b.reset_parameters(2);
  Trainer plain{a, optim::SGD{{.lr = 0.1f}}, nn::MSE{}, GradProbe{}};
  plain.fit(loader, nullptr, quiet(1_ba));
  const double raw = plain.method<GradProbe>().norm;
  REQUIRE(raw > 0.05);
  Trainer clipped{b, optim::SGD{{.lr = 0.1f}}, nn::MSE{}, GradProbe{}, methods::GradientClipping::by_norm(0.05f)};
  clipped.fit(loader, nullptr, quiet(1_ba));
  CHECK(clipped.method<GradProbe>().norm == doctest::Approx(0.05));
  CHECK(clipped.method<methods::GradientClipping>().last_norm() == doctest::Approx(raw));
  // The clipped step is the raw step scaled by 0.05 / raw.
  a.reset_parameters(2);
  const B::matrix w0 = a.layer<0>().weight;
  const B::matrix d_clipped = b.layer<0>().weight - w0;
  Trainer again{a, optim::SGD{{.lr = 0.1f}}, nn::MSE{}};
  again.fit(loader, nullptr, quiet(1_ba));
  const B::matrix d_raw = a.layer<0>().weight - w0;
  CHECK((d_clipped - d_raw * static_cast<float>(0.05 / raw)).cwiseAbs().maxCoeff() < 1e-6f);

  // Below the threshold nothing changes.
  Net c;
  c.reset_parameters(2);
  Trainer loose{c, optim::SGD{{.lr = 0.1f}}, nn::MSE{}, GradProbe{}, methods::GradientClipping::by_norm(1e3f)};
  loose.fit(loader, nullptr, quiet(1_ba));
  CHECK(loose.method<GradProbe>().norm == doctest::Approx(raw));
}

TEST_CASE("GradientClipping by value clamps every element; bad thresholds are rejected") {
  auto train = blobs(30, 1);
  data::Loader loader(train, {.batch_size = 30, .prefetch = 0});
  Net n;
  n.reset_parameters(2);
  Trainer t{n, optim::SGD{{.lr = 0.1f}}, nn::MSE{}, GradProbe{}, methods::GradientClipping::by_value(1e-3f)};
  t.fit(loader, nullptr, quiet(1_ba));
  CHECK(t.method<GradProbe>().max_abs == doctest::Approx(1e-3));
  CHECK_THROWS_AS(methods::GradientClipping::by_norm(0.f), config_error);
  CHECK_THROWS_AS(methods::GradientClipping::by_value(-1.f), config_error);
  static_assert(methods::GradientClipping::tag.act == action::restrict);
  static_assert(methods::LabelSmoothing::tag.comp == component::optimization);
}

TEST_CASE("LabelSmoothing: a label outside the model's classes is a clear error, not a heap overflow") {
  B::labels bad{1, 11};
  B::matrix out;
  CHECK_THROWS_WITH_AS(methods::smooth_labels<B>(bad, 10, 0.1f, out), doctest::Contains("label 11 at batch index 1"),
                       shape_error);
}

TEST_CASE("fit checks the data against the model before training") {
  auto train = blobs(30, 1);
  data::Loader loader(train, {.batch_size = 10, .prefetch = 0});
  Net net;
  Trainer trainer{net, optim::SGD{}, nn::SoftmaxCrossEntropy{}};
  data::Dataset wide = blobs(10, 2);
  wide.features = B::matrix::Zero(7, 10);
  wide.sample_shape = Shape(7);
  CHECK_THROWS_WITH_AS(trainer.fit(loader, wide, quiet(1_ep)), doctest::Contains("does not fit the model"), shape_error);
  data::Dataset many = blobs(10, 2);
  many.num_classes = 5;
  CHECK_THROWS_WITH_AS(trainer.fit(loader, many, quiet(1_ep)), doctest::Contains("5 classes"), shape_error);
  data::Dataset empty = blobs(10, 2);
  empty.features.resize(4, 0);
  empty.labels.clear();
  CHECK_THROWS_WITH_AS(trainer.fit(loader, empty, quiet(1_ep)), doctest::Contains("is empty"), config_error);
  CHECK(trainer.time().batch == 0);  // nothing was trained
}

TEST_CASE("each fit() is a new run: Time and optimizer state start afresh, weights carry over") {
  auto train = blobs(40, 1);
  data::Loader loader(train, {.batch_size = 10, .prefetch = 0});
  Net a;
  a.reset_parameters(3);
  Trainer twice{a, optim::AdamW{{.lr = 0.01f}}, nn::SoftmaxCrossEntropy{}};
  twice.fit(loader, nullptr, quiet(1_ep));
  Net b = a;  // the weights after the first run
  const auto r = twice.fit(loader, nullptr, quiet(1_ep));
  CHECK(r.steps == 4);
  CHECK(twice.optimizer().steps() == 4);  // not 8: the moments were reset
  // The second run equals a fresh optimizer started from the first run's weights.
  Trainer fresh{b, optim::AdamW{{.lr = 0.01f}}, nn::SoftmaxCrossEntropy{}};
  fresh.fit(loader, nullptr, quiet(1_ep));
  CHECK(a.layer<0>().weight == b.layer<0>().weight);
  CHECK(a.layer<2>().bias == b.layer<2>().bias);
}

TEST_CASE("a NaN in the data is reported as such, with the dataset index") {
  auto train = blobs(20, 1);
  train.features(2, 13) = std::nanf("");
  data::Loader loader(train, {.batch_size = 20, .shuffle = false, .prefetch = 0});
  Net net;
  Trainer trainer{net, optim::SGD{}, nn::SoftmaxCrossEntropy{}};
  CHECK_THROWS_WITH_AS(trainer.fit(loader, nullptr, quiet(1_ep)), doctest::Contains("dataset index 13"),
                       divergence_error);
}

// ---- EMA -----------------------------------------------------------------------------------

namespace {
// Records the first weight tensor after every step.
struct WeightLog {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::after_step>;
  std::vector<B::matrix> w;
  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    bool first = true;
    ctx.model.for_each_parameter([&](auto& p, auto&) {
      if (first) w.push_back(p);
      first = false;
    });
  }
};
B::matrix first_weight(Net& net) {
  B::matrix out;
  bool first = true;
  net.for_each_parameter([&](auto& p, auto&) {
    if (first) out = p;
    first = false;
  });
  return out;
}
}  // namespace

TEST_CASE("EMA: the average follows a = 2^(-1/half_life) over the trajectory (warmup = false); evaluation and the end use it") {
  const auto train = blobs(96, 1);
  const auto test = blobs(30, 2);
  for (const bool replace : {false, true}) {
    CAPTURE(replace);
    data::Loader loader(train, {.batch_size = 16, .seed = 1});
    Net net;
    net.reset_parameters(1);
    Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
              methods::EMA{{.half_life = Duration(3, Unit::batch), .update_every = 2, .replace_at_end = replace,
                           .warmup = false}},
              WeightLog{}};
    (void)t.fit(loader, &test, {.max_duration = 2_ep, .progress = ProgressMode::never});
    const auto& log = t.method<WeightLog>().w;
    REQUIRE(log.size() == 12);
    // Updates after steps 2, 4, ..., 12 (Time.batch + 1 a multiple of 2); the first copies.
    const float a = std::exp2(-2.f / 3.f);
    B::matrix expect = log[1];
    for (std::size_t s = 3; s < 12; s += 2) expect = a * expect + (1.f - a) * log[s];
    const auto& avg = t.method<methods::EMA>().averaged().front();
    CHECK((avg - expect).cwiseAbs().maxCoeff() < 1e-6f);
    // fit() ends with the averaged weights when asked, else with the raw last ones.
    CHECK(first_weight(net) == (replace ? avg : log.back()));
    // Evaluation swaps the average in and back out.
    if (!replace) {
      const double raw = evaluate_accuracy(net, test);
      double during = -1;
      B::matrix seen;
      EvalContext<Net> ectx{net, t.time()};
      t.method<methods::EMA>().on_eval_begin(ectx);
      seen = first_weight(net);
      during = evaluate_accuracy(net, test);
      t.method<methods::EMA>().on_eval_end(ectx);
      CHECK(seen == avg);
      CHECK(first_weight(net) == log.back());
      CHECK(t.evaluate(test) == during);
      CHECK(evaluate_accuracy(net, test) == raw);
    }
  }
  CHECK_THROWS_WITH_AS(methods::EMA({.half_life = Duration(0, Unit::batch)}),
                       doctest::Contains("half_life must be a positive duration in ba or ep"), config_error);
  CHECK_THROWS_WITH_AS(methods::EMA({.update_every = 0}), doctest::Contains("update_every must be >= 1"),
                       config_error);
  CHECK(methods::EMA({.half_life = Duration(2, Unit::epoch)}).smoothing(5) == doctest::Approx(std::exp2(-0.1)));
}

namespace {
// Three residual blocks on 8 features; rates 0.2, 0.4, 0.6 under drop_rate 0.6, linear.
using ResBlock = nn::Residual<nn::Sequential<nn::Linear<8, 8>, nn::ReLU, nn::Linear<8, 8>>>;
using ResNet3 = nn::Sequential<nn::Linear<4, 8>, ResBlock, ResBlock, ResBlock, nn::Linear<8, 3>>;

// Records, at before_forward, which residual blocks run in this step and their scales.
struct BlockLog {
  static constexpr taxonomy tag{component::model, action::retrofit};
  using events = fasttrain::events<event::before_forward>;
  std::vector<std::vector<float>> scale;  // per step, per block: 0 dropped, else the body's scale
  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    std::vector<float> s;
    nn::visit_layers(ctx.model, [&](auto& l) {
      if constexpr (requires { l.body_active(); }) s.push_back(l.body_active() ? l.body_scale() : 0.f);
    });
    scale.push_back(s);
  }
};
// Whether ResNet3's first block ran in each step, and whether the step changed its body.
struct FirstBodyLog {
  static constexpr taxonomy tag{component::model, action::retrofit};
  using events = fasttrain::events<event::before_forward, event::after_step>;
  std::vector<bool> active, changed;
  B::matrix w;
  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    active.push_back(ctx.model.template layer<1>().body_active());
    w = ctx.model.template layer<1>().body().template layer<0>().weight;
  }
  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    changed.push_back(!(ctx.model.template layer<1>().body().template layer<0>().weight == w));
  }
};
}  // namespace

TEST_CASE("StochasticDepth: block l of L is dropped with probability drop_rate*l/L, kept ones scaled by 1/(1-p)") {
  const auto train = blobs(480, 3);
  data::Loader loader(train, {.batch_size = 8, .seed = 2});
  ResNet3 net;
  net.reset_parameters(3);
  Trainer t{net, optim::SGD{{.lr = 1e-3f}}, nn::SoftmaxCrossEntropy{},
            methods::StochasticDepth{{.drop_rate = 0.6f, .seed = 7}}, BlockLog{}};
  (void)t.fit(loader, nullptr, quiet(10_ep));
  const auto& log = t.method<BlockLog>().scale;
  REQUIRE(log.size() == 600);
  CHECK(t.method<methods::StochasticDepth>().blocks() == 3);
  const double p[3] = {0.2, 0.4, 0.6};
  for (std::size_t b = 0; b < 3; ++b) {
    CAPTURE(b);
    int kept = 0;
    for (const auto& s : log) {
      REQUIRE(s.size() == 3);
      if (s[b] == 0.f) continue;
      ++kept;
      CHECK(s[b] == doctest::Approx(1.0 / (1.0 - p[b])));
    }
    // 600 draws: the standard deviation of the kept fraction is at most 0.02.
    CHECK(kept / 600.0 == doctest::Approx(1.0 - p[b]).epsilon(0).scale(0).epsilon(0.07 / (1.0 - p[b])));
  }
  // fit() leaves every block plain, so evaluation and later use see the whole network.
  nn::visit_layers(net, [](auto& l) {
    if constexpr (requires { l.body_active(); }) CHECK((l.body_active() && l.body_scale() == 1.f));
  });

  // A step that drops the first block leaves its body's weights unchanged (zero gradient, no
  // momentum or decay); a step that keeps it changes them.
  ResNet3 net2;
  net2.reset_parameters(3);
  Trainer t2{net2, optim::SGD{{.lr = 1e-3f}}, nn::SoftmaxCrossEntropy{},
             methods::StochasticDepth{{.drop_rate = 0.5f, .distribution = methods::DropDistribution::uniform,
                                       .warmup = Duration(2, Unit::batch), .seed = 1}},
             FirstBodyLog{}};
  (void)t2.fit(loader, nullptr, quiet(Duration(60, Unit::batch)));
  const auto& fb = t2.method<FirstBodyLog>();
  REQUIRE(fb.active.size() == 60);
  CHECK((fb.active[0] && fb.changed[0]));  // warmup: the first step's rate is 0
  int dropped = 0;
  for (std::size_t k = 0; k < 60; ++k) {
    CAPTURE(k);
    CHECK(fb.changed[k] == fb.active[k]);
    dropped += !fb.active[k];
  }
  CHECK(dropped > 15);

  // A model without residual blocks is a clear error.
  Net flat;
  Trainer t3{flat, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, methods::StochasticDepth{}};
  CHECK_THROWS_WITH_AS((void)t3.fit(loader, nullptr, quiet(1_ep)), doctest::Contains("no nn::Residual block"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::StochasticDepth({.drop_rate = 1.f}), doctest::Contains("drop_rate must be in [0, 1)"),
                       config_error);
}

namespace {
// Records the gradient after backward (before SAM) and the one the optimizer gets (after SAM),
// with the weights and the batch, for steps 0..n.
struct SamProbe {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::after_backward, event::before_step>;
  using runs_after = type_list<methods::SAM>;
  struct Step {
    std::vector<B::matrix> w, g, g_final;
    B::matrix x;
    B::labels y;
  };
  std::vector<Step> steps;
  template <class Ctx>
  void on_after_backward(Ctx& ctx) {
    Step s;
    ctx.model.for_each_parameter([&](auto& w, auto& g) {
      s.w.push_back(w);
      s.g.push_back(g);
    });
    s.x = ctx.batch.inputs.data;
    s.y = ctx.batch.labels;
    steps.push_back(std::move(s));
  }
  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    std::size_t i = 0;
    ctx.model.for_each_parameter([&](auto& w, auto& g) {
      CHECK(w == steps.back().w[i++]);  // SAM leaves the weights exactly as they were
      steps.back().g_final.push_back(g);
    });
  }
};
}  // namespace

TEST_CASE("SAM: the step uses the gradient at w + rho g/||g||, every interval-th step; w is unchanged") {
  const auto train = blobs(96, 4);
  data::Loader loader(train, {.batch_size = 16, .seed = 3});
  Net net;
  net.reset_parameters(4);
  const float rho = 0.5f;
  Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, SamProbe{},
            methods::SAM{{.rho = rho, .interval = 3}}};
  (void)t.fit(loader, nullptr, quiet(1_ep));
  const auto& steps = t.method<SamProbe>().steps;
  REQUIRE(steps.size() == 6);
  CHECK(t.method<methods::SAM>().sam_steps() == 2);
  for (std::size_t k = 0; k < steps.size(); ++k) {
    CAPTURE(k);
    const auto& s = steps[k];
    if (k % 3 != 0) {  // plain steps: the gradient is untouched
      for (std::size_t i = 0; i < s.g.size(); ++i) CHECK(s.g_final[i] == s.g[i]);
      continue;
    }
    // Independently: a copy of the network at w + rho g/||g||, one forward and backward.
    double sq = 0;
    for (const auto& g : s.g) sq += g.squaredNorm();
    Net probe;
    std::size_t i = 0;
    probe.for_each_parameter([&](auto& w, auto&) {
      w = s.w[i] + static_cast<float>(rho / std::sqrt(sq)) * s.g[i];
      ++i;
    });
    B::tensor x;
    x.shape = Shape(4);
    x.data = s.x;
    nn::SoftmaxCrossEntropy loss;
    const auto& out = probe.forward(x, nn::Mode::train);
    (void)loss.forward(out, nn::Targets<B>{&s.y, nullptr});
    B::tensor dout;
    loss.backward(dout);
    probe.backward(dout);
    i = 0;
    double diff = 0, base = 0;
    probe.for_each_parameter([&](auto&, auto& g) {
      diff += (g - s.g_final[i]).squaredNorm();
      base += (s.g[i] - s.g_final[i]).squaredNorm();
      ++i;
    });
    CHECK(std::sqrt(diff) < 1e-5);  // the SAM gradient ...
    CHECK(std::sqrt(base) > 1e-2);  // ... which differs clearly from the plain one
  }
  CHECK_THROWS_WITH_AS(methods::SAM({.rho = 0.f}), doctest::Contains("rho must be positive"), config_error);
  CHECK_THROWS_WITH_AS(methods::SAM({.interval = 0}), doctest::Contains("interval must be >= 1"), config_error);
}

TEST_CASE("SWA: equal-weight average of the weights at each update from start to end, taken by the model at end") {
  const auto train = blobs(96, 5);
  data::Loader loader(train, {.batch_size = 16, .seed = 4});
  Net net;
  net.reset_parameters(5);
  // 6 steps per epoch, 3 epochs: updates after steps 6, 8, 10 (start 5 ba: steps done >= 5, every
  // 2 ba), end at 11 steps done: the model takes the average there, step 12 trains on from it.
  Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{},
            methods::SWA{{.start = Duration(5, Unit::batch), .end = Duration(11, Unit::batch),
                          .update_every = Duration(2, Unit::batch)}},
            WeightLog{}};
  (void)t.fit(loader, nullptr, quiet(2_ep));
  const auto& log = t.method<WeightLog>().w;  // first weight after each step
  REQUIRE(log.size() == 12);
  const auto& swa = t.method<methods::SWA>();
  CHECK(swa.count() == 3);
  CHECK(swa.applied());
  const B::matrix expect = (log[5] + log[7] + log[9]) / 3.f;
  CHECK((swa.averaged().front() - expect).cwiseAbs().maxCoeff() < 1e-6f);
  // A run that stops at `end` ends with exactly the average in the model.
  (void)t.fit(loader, nullptr, quiet(Duration(11, Unit::batch)));
  CHECK(t.method<methods::SWA>().count() == 3);
  CHECK(first_weight(net) == t.method<methods::SWA>().averaged().front());
  CHECK_THROWS_WITH_AS(methods::SWA({.start = 0.5_dur, .end = 0.5_dur}), doctest::Contains("must come after start"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::SWA({.update_every = Duration(0.5, Unit::epoch)}),
                       doctest::Contains("update_every must be a whole number"), config_error);
  CHECK_THROWS_WITH_AS(methods::SWA({.start = 0.5_dur, .end = Duration(3, Unit::epoch)}),
                       doctest::Contains("end must be in the unit of start"), config_error);
}

TEST_CASE("SWA: BatchNorm statistics are recomputed for the averaged weights from the training set") {
  using BNNet = nn::Sequential<nn::Linear<4, 8>, nn::BatchNorm2d<8>, nn::ReLU, nn::Linear<8, 3>>;
  const auto train = blobs(96, 6);
  data::Loader loader(train, {.batch_size = 16, .seed = 4});
  BNNet net;
  net.reset_parameters(6);
  Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{},
            methods::SWA{{.start = 0.5_dur, .end = 1.0_dur, .update_every = Duration(1, Unit::batch), .bn_chunk = 32}}};
  (void)t.fit(loader, nullptr, quiet(2_ep));  // end = the whole budget: the swap happens at fit_end
  REQUIRE(t.method<methods::SWA>().applied());
  // Independently: the averaged first layer's outputs on the training set, in chunks of 32;
  // the statistics are the chunks' means and unbiased variances, averaged.
  const auto& lin = net.layer<0>();
  const B::matrix z = (lin.weight * train.features).colwise() + lin.bias.col(0);
  B::matrix mean = B::matrix::Zero(8, 1), var = B::matrix::Zero(8, 1);
  for (int c = 0; c < 3; ++c) {
    const B::matrix zc = z.middleCols(32 * c, 32);
    const B::matrix m = zc.rowwise().mean();
    mean += m / 3.f;
    var += ((zc.colwise() - m.col(0)).array().square().rowwise().sum() / 31.f).matrix() / 3.f;
  }
  CHECK((net.layer<1>().running_mean - mean).cwiseAbs().maxCoeff() < 1e-4f);
  CHECK((net.layer<1>().running_var - var).cwiseAbs().maxCoeff() < 1e-3f * var.maxCoeff());
  CHECK(net.layer<1>().momentum() == 0.1f);  // restored after the pass
}

TEST_CASE("Sequential::freeze_prefix: the frozen layers get no backward pass, the others the same gradients") {
  using Deep = nn::Sequential<nn::Linear<4, 8>, nn::ReLU, nn::Linear<8, 8>, nn::ReLU, nn::Linear<8, 3>>;
  Deep net;
  net.reset_parameters(8);
  const auto ds = blobs(10, 8);
  B::tensor x;
  x.shape = Shape(4);
  x.data = ds.features;
  B::tensor dy;
  dy.resize(Shape(3), 10);
  dy.data.setOnes();
  (void)net.forward(x, nn::Mode::train);
  net.backward(dy);
  const B::matrix g2 = net.layer<2>().weight_grad, g4 = net.layer<4>().weight_grad;
  net.layer<0>().weight_grad.setConstant(7.f);
  net.freeze_prefix(2);  // Linear<4,8> and its ReLU
  (void)net.forward(x, nn::Mode::train);
  net.backward(dy);
  CHECK(net.layer<0>().weight_grad == B::matrix::Constant(8, 4, 7.f));  // not touched
  CHECK(net.layer<2>().weight_grad == g2);
  CHECK(net.layer<4>().weight_grad == g4);
  CHECK_THROWS_AS(net.freeze_prefix(6), std::out_of_range);
}

namespace {
// Layer 2's weight and the frozen prefix after each step.
struct FreezeProbe {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::after_step>;
  std::vector<B::matrix> w2;
  std::vector<std::size_t> prefix;
  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    w2.push_back(ctx.model.template layer<2>().weight);
    prefix.push_back(ctx.model.frozen_prefix());
  }
};
}  // namespace

TEST_CASE("LayerFreezing: the first floor(f P) parameterised layers freeze at epoch ends; their weights stay put") {
  using Deep = nn::Sequential<nn::Linear<4, 8>, nn::ReLU, nn::Linear<8, 8>, nn::ReLU, nn::Linear<8, 3>>;
  methods::LayerFreezing lf{{.start = 0.25, .level = 1.0}};
  // f = (t - 0.25) / 0.75 of P = 3 layers.
  CHECK(lf.frozen_at(0.2, 3) == 0);
  CHECK(lf.frozen_at(0.5, 3) == 1);   // f = 1/3
  CHECK(lf.frozen_at(0.75, 3) == 2);  // f = 2/3
  CHECK(lf.frozen_at(0.74, 3) == 1);
  CHECK(lf.frozen_at(1.0, 3) == 3);
  CHECK(methods::LayerFreezing({.start = 0.5, .level = 0.5}).frozen_at(1.0, 4) == 2);

  const auto train = blobs(96, 9);
  data::Loader loader(train, {.batch_size = 16, .seed = 9});
  Deep net;
  net.reset_parameters(9);
  // 4 epochs: after epoch 2 (t = 0.5) one layer is frozen, after epoch 3 (t = 0.75) two.
  Trainer t2{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-3f}}, nn::SoftmaxCrossEntropy{},
             methods::LayerFreezing{{.start = 0.25}}, WeightLog{}, FreezeProbe{}};
  (void)t2.fit(loader, nullptr, quiet(4_ep));
  const auto& w0 = t2.method<WeightLog>().w;  // layer 0's weight after each step
  const auto& probe = t2.method<FreezeProbe>();
  REQUIRE(w0.size() == 24);
  // Steps 1-12 train everything; from step 13 (epoch 3) layer 0 is frozen, from step 19 layer 2.
  for (std::size_t s = 1; s < 12; ++s) CHECK(!(w0[s] == w0[s - 1]));
  for (std::size_t s = 12; s < 24; ++s) CHECK(w0[s] == w0[11]);
  for (std::size_t s = 13; s < 18; ++s) CHECK(!(probe.w2[s] == probe.w2[s - 1]));
  for (std::size_t s = 18; s < 24; ++s) CHECK(probe.w2[s] == probe.w2[17]);
  CHECK(probe.prefix[11] == 0);
  CHECK(probe.prefix[12] == 1);
  CHECK(probe.prefix[18] == 3);
  CHECK(net.frozen_prefix() == 0);  // fit() ends with everything unfrozen
  CHECK_THROWS_WITH_AS(methods::LayerFreezing({.start = 1.0}), doctest::Contains("start must be in [0, 1)"),
                       config_error);
}
