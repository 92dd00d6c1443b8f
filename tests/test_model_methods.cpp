// Model methods (methods/model/): each test shows the method's effect on known inputs.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fasttrain/fasttrain.hpp>

#include "fixtures.hpp"
#include <string>
#include <vector>

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;
namespace fs = std::filesystem;

// ---- MagnitudePruning ----------------------------------------------------------------------

namespace {

using PruneNet = nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>>;  // weights 16x4 and 3x16

FitOptions quiet(Duration d) {
  FitOptions o;
  o.max_duration = d;
  o.progress = ProgressMode::never;
  return o;
}

// Biases start at 0.1 instead of 0, so that "no bias is pruned" is not true by default.
PruneNet prune_net(std::uint64_t seed) {
  PruneNet net;
  net.reset_parameters(seed);
  net.layer<0>().bias.setConstant(0.1f);
  net.layer<2>().bias.setConstant(0.1f);
  return net;
}

std::int64_t zeros_in(const B::matrix& m) { return static_cast<std::int64_t>((m.array() == 0.f).count()); }

// The model's weights after each step, read at after_step once MagnitudePruning has masked
// them (after_step visits methods in reverse order, so running before it means seeing them
// after it): what the mask update at this step's batch_end ranks.
struct BeforeUpdate {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::after_step>;
  using runs_before = type_list<methods::MagnitudePruning>;
  std::vector<std::vector<B::matrix>> w;  // [step - 1][tensor]
  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    w.emplace_back();
    ctx.model.for_each_parameter([&](auto& p, auto&) { w.back().push_back(p); });
  }
};
// The model's parameters at each batch_end, after MagnitudePruning's update.
struct AfterUpdate {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::batch_end>;
  using runs_after = type_list<methods::MagnitudePruning>;
  std::vector<std::vector<B::matrix>> w;  // [step - 1][tensor]: weight 0, bias 0, weight 1, bias 1
  template <class Ctx>
  void on_batch_end(Ctx& ctx) {
    w.emplace_back();
    ctx.model.for_each_parameter([&](auto& p, auto&) { w.back().push_back(p); });
  }
};

// The largest |w| among entries of `before` that are zero in `after`, and the smallest
// among those that are not, over the tensors `which`.
struct Split {
  float max_pruned = -1.f, min_kept = INFINITY;
  std::int64_t pruned = 0;
};
Split split(const std::vector<B::matrix>& before, const std::vector<B::matrix>& after, std::vector<std::size_t> which) {
  Split s;
  for (auto t : which)
    for (Eigen::Index i = 0; i < before[t].size(); ++i) {
      const float a = std::fabs(before[t].data()[i]);
      if (after[t].data()[i] == 0.f) {
        s.max_pruned = std::max(s.max_pruned, a);
        ++s.pruned;
      } else {
        s.min_kept = std::min(s.min_kept, a);
      }
    }
  return s;
}

// Whether every entry zero in `a` is zero in `b`.
bool zeros_kept(const B::matrix& a, const B::matrix& b) {
  for (Eigen::Index i = 0; i < a.size(); ++i)
    if (a.data()[i] == 0.f && b.data()[i] != 0.f) return false;
  return true;
}

// A fresh, empty directory under the system's temporary directory.
std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("fasttrain_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace

TEST_CASE("MagnitudePruning: the schedule is s_f + (s_i - s_f)(1 - (t - t0)/(t1 - t0))^3, s_i before t0, s_f after t1") {
  const methods::MagnitudePruning p({.target_sparsity = 0.8f, .initial_sparsity = 0.1f, .start = 10_ba, .end = 50_ba});
  Time t;
  auto at = [&](std::int64_t step) {
    t.batch = step;
    return p.sparsity_at(t);
  };
  // By hand: at step 20, (1 - 10/40)^3 = 0.421875 and 0.8 - 0.7 * 0.421875 = 0.5046875;
  // at 30, 0.8 - 0.7 * 0.125 = 0.7125; at 40, 0.8 - 0.7 / 64 = 0.7890625.
  const double sf = 0.8f, si = 0.1f;  // the float options, widened
  CHECK(at(0) == si);
  CHECK(at(5) == si);
  CHECK(at(10) == si);
  CHECK(at(20) == doctest::Approx(0.5046875).epsilon(1e-6));
  CHECK(at(30) == doctest::Approx(0.7125).epsilon(1e-6));
  CHECK(at(40) == doctest::Approx(0.7890625).epsilon(1e-6));
  CHECK(at(50) == sf);
  CHECK(at(90) == sf);

  // The default: 0 -> 0.5 over [0.1, 0.7] of the budget, here 200 steps.
  const methods::MagnitudePruning d;
  Time u;
  u.max_duration = 200_ba;
  u.batch = 20;
  CHECK(d.sparsity_at(u) == 0.0);
  u.batch = 80;  // halfway: 0.5 - 0.5 / 8
  CHECK(d.sparsity_at(u) == doctest::Approx(0.4375).epsilon(1e-6));
  u.batch = 140;
  CHECK(d.sparsity_at(u) == 0.5);
}

TEST_CASE("MagnitudePruning: magnitude_masks masks exactly round(s * n) entries, ties resolved deterministically") {
  using methods::magnitude_masks;
  auto one = [](const B::matrix& w, double s, B::matrix& m) {
    const B::matrix* ws[] = {&w};
    magnitude_masks(ws, s, std::span(&m, 1));
  };
  // All equal: the first round(s * n) in column-major order.
  B::matrix w = B::matrix::Constant(3, 4, 0.5f), m;
  one(w, 0.25, m);
  REQUIRE(m.rows() == 3);
  REQUIRE(m.cols() == 4);
  for (Eigen::Index i = 0; i < 12; ++i) CHECK(m.data()[i] == (i < 3 ? 0.f : 1.f));
  // Rounding: 0.3 * 12 = 3.6 -> 4; 0.125 * 12 = 1.5 -> 2; 0.99 * 12 = 11.88 -> 12 (all).
  one(w, 0.3, m);
  CHECK(zeros_in(m) == 4);
  one(w, 0.125, m);
  CHECK(zeros_in(m) == 2);
  one(w, 0.99, m);
  CHECK(zeros_in(m) == 12);
  one(w, 0.0, m);
  CHECK(zeros_in(m) == 0);
  // By magnitude, whatever the sign.
  B::matrix v(1, 5);
  v << -3.f, 0.5f, 2.f, -0.25f, 1.f;
  one(v, 0.4, m);
  CHECK(m == (B::matrix(1, 5) << 1.f, 0.f, 1.f, 0.f, 1.f).finished());
  // A tie goes first to an entry already masked.
  B::matrix z = B::matrix::Zero(1, 4), prior(1, 4);
  prior << 1.f, 1.f, 1.f, 0.f;
  one(z, 0.25, prior);
  CHECK(prior == (B::matrix(1, 4) << 1.f, 1.f, 1.f, 0.f).finished());
  // Several tensors ranked together: 0.6 * 5 = 3 smallest of {1, -2, 3} and {0.5, 2.5}.
  B::matrix a(1, 3), b(1, 2);
  a << 1.f, -2.f, 3.f;
  b << 0.5f, 2.5f;
  std::vector<B::matrix> ms(2);
  const B::matrix* ab[] = {&a, &b};
  magnitude_masks(ab, 0.6, ms);
  CHECK(ms[0] == (B::matrix(1, 3) << 0.f, 0.f, 1.f).finished());
  CHECK(ms[1] == (B::matrix(1, 2) << 0.f, 1.f).finished());
}

TEST_CASE("MagnitudePruning: masks update every update_every steps from start to end and at end, to exact counts") {
  const auto train = fixtures::blobs(64, 1);
  data::Loader loader(train, {.batch_size = 8, .seed = 1, .prefetch = 0});
  PruneNet net = prune_net(3);
  Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, BeforeUpdate{},
            methods::MagnitudePruning{{.target_sparsity = 0.6f, .start = 2_ba, .end = 10_ba, .update_every = 4}},
            AfterUpdate{}};
  (void)t.fit(loader, nullptr, quiet(20_ba));
  const auto& before = t.method<BeforeUpdate>().w;
  const auto& after = t.method<AfterUpdate>().w;
  REQUIRE(after.size() == 20);
  REQUIRE(before.size() == 20);

  // Updates at steps 4 and 8 (multiples of 4 from step 2) and 10 (end). By hand, with
  // s = 0.6 (1 - (1 - (step - 2) / 8)^3):
  //   step 4: s = 0.346875   -> 16x4: round(22.2) = 22,  3x16: round(16.65) = 17
  //   step 8: s = 0.590625   -> 38 (37.8) and 28 (28.35)
  //   step 10: s = 0.6        -> 38 (38.4) and 29 (28.8)
  auto expected = [](std::int64_t step) -> std::pair<std::int64_t, std::int64_t> {
    if (step < 4) return {0, 0};
    if (step < 8) return {22, 17};
    if (step < 10) return {38, 28};
    return {38, 29};
  };
  for (std::int64_t step = 1; step <= 20; ++step) {
    CAPTURE(step);
    const auto& w = after[static_cast<std::size_t>(step - 1)];
    REQUIRE(w.size() == 4);
    CHECK(zeros_in(w[0]) == expected(step).first);
    CHECK(zeros_in(w[2]) == expected(step).second);
    CHECK(zeros_in(w[1]) == 0);  // biases are never pruned
    CHECK(zeros_in(w[3]) == 0);
  }

  // At each update the pruned entries are the smallest in magnitude of the weights it saw,
  // per tensor, and what was pruned before stays pruned.
  for (std::int64_t step : {4, 8, 10}) {
    CAPTURE(step);
    const auto& seen = before[static_cast<std::size_t>(step - 1)];
    const auto& now = after[static_cast<std::size_t>(step - 1)];
    for (std::size_t tensor : {0u, 2u}) {
      CAPTURE(tensor);
      const Split s = split(seen, now, {tensor});
      CHECK(s.pruned == (tensor == 0 ? expected(step).first : expected(step).second));
      CHECK(s.max_pruned <= s.min_kept);
      CHECK(zeros_kept(after[static_cast<std::size_t>(step - 2)][tensor], now[tensor]));
    }
  }
  // After end the masks are fixed: the same entries are zero at every later step while the
  // others keep training.
  const auto& final_w = after[9];
  for (std::size_t step = 11; step <= 20; ++step)
    for (std::size_t tensor : {0u, 2u}) {
      CAPTURE(step);
      CHECK(((after[step - 1][tensor].array() == 0.f) == (final_w[tensor].array() == 0.f)).all());
    }
  CHECK(net.layer<0>().weight != final_w[0]);
  CHECK(net.layer<2>().weight != final_w[2]);
  // The method's view matches the model's.
  const auto& p = t.method<methods::MagnitudePruning>();
  REQUIRE(p.masks().size() == 2);
  CHECK(((p.masks()[0].array() == 0.f) == (net.layer<0>().weight.array() == 0.f)).all());
  CHECK(((p.masks()[1].array() == 0.f) == (net.layer<2>().weight.array() == 0.f)).all());
  CHECK(p.sparsity() == doctest::Approx((38.0 + 29.0) / 112.0));
  CHECK(methods::weight_sparsity(net) == doctest::Approx((38.0 + 29.0) / 112.0));
  CHECK(p.current_target() == doctest::Approx(0.6));
  CHECK(p.finished());
}

TEST_CASE("MagnitudePruning: global scope ranks all prunable tensors under one threshold") {
  const auto train = fixtures::blobs(64, 1);
  data::Loader loader(train, {.batch_size = 8, .seed = 1, .prefetch = 0});
  PruneNet net = prune_net(3);
  Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, BeforeUpdate{},
            methods::MagnitudePruning{{.target_sparsity = 0.6f,
                                       .start = 2_ba,
                                       .end = 10_ba,
                                       .update_every = 4,
                                       .scope = methods::PruningScope::global}},
            AfterUpdate{}};
  (void)t.fit(loader, nullptr, quiet(12_ba));
  const auto& before = t.method<BeforeUpdate>().w;
  const auto& after = t.method<AfterUpdate>().w;
  REQUIRE(after.size() == 12);
  // Over the 112 prunable entries: step 4 round(38.85) = 39, step 8 round(66.15) = 66,
  // step 10 round(67.2) = 67.
  for (const auto& sc : {std::pair{4, 39}, std::pair{8, 66}, std::pair{10, 67}}) {
    const int step = sc.first, count = sc.second;  // (clang 14 cannot capture a structured binding)
    CAPTURE(step);
    const auto& seen = before[static_cast<std::size_t>(step - 1)];
    const auto& now = after[static_cast<std::size_t>(step - 1)];
    const Split s = split(seen, now, {0, 2});
    CHECK(s.pruned == count);
    CHECK(zeros_in(now[0]) + zeros_in(now[2]) == count);
    CHECK(s.max_pruned <= s.min_kept);  // one threshold for both tensors
    CHECK(zeros_in(now[1]) + zeros_in(now[3]) == 0);
  }
  // He initialization gives the second layer (fan-in 16) half the first's scale (fan-in 4):
  // one threshold prunes it harder, unlike per-tensor pruning (38/64 and 29/48 at 0.6).
  const auto& last = after.back();
  CHECK(static_cast<double>(zeros_in(last[2])) / 48.0 > static_cast<double>(zeros_in(last[0])) / 64.0);
}

TEST_CASE("MagnitudePruning: Conv2d weights are pruned; biases and BatchNorm's scale and shift are not") {
  using Net = nn::Sequential<nn::Conv2d<1, 4, 3, 1, 1>, nn::BatchNorm2d<4>, nn::ReLU, nn::GlobalAvgPool,
                             nn::Linear<4, 2>>;
  data::Dataset train;
  const std::int64_t n = 32;
  train.features.resize(36, n);
  train.labels.resize(static_cast<std::size_t>(n));
  train.sample_shape = Shape(1, 6, 6);
  train.num_classes = 2;
  train.name = "images";
  Rng rng(5);
  for (std::int64_t j = 0; j < n; ++j) {
    train.labels[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(j % 2);
    for (Eigen::Index i = 0; i < 36; ++i) train.features(i, j) = rng.normal(j % 2 ? 1.f : -1.f, 1.f);
  }
  data::Loader loader(train, {.batch_size = 8, .seed = 1, .prefetch = 0});
  Net net;
  net.reset_parameters(2);
  Trainer t{net, optim::SGD{{.lr = 0.05f}}, nn::SoftmaxCrossEntropy{},
            methods::MagnitudePruning{{.target_sparsity = 0.5f, .start = 0_ba, .end = 2_ba}}};
  (void)t.fit(loader, nullptr, quiet(4_ba));
  const auto& masks = t.method<methods::MagnitudePruning>().masks();
  REQUIRE(masks.size() == 2);
  CHECK(masks[0].rows() == 4);
  CHECK(masks[0].cols() == 9);
  CHECK(masks[1].rows() == 2);
  CHECK(masks[1].cols() == 4);
  std::vector<std::int64_t> zeros;
  net.for_each_parameter([&](auto& p, auto&) { zeros.push_back(zeros_in(p)); });
  // Conv weight, conv bias, BN scale, BN shift, Linear weight, Linear bias. (The conv bias
  // starts at 0 and BatchNorm cancels its gradient, so its zeros say nothing; it has no mask.)
  REQUIRE(zeros.size() == 6);
  CHECK(zeros[0] == 18);
  CHECK(zeros[2] == 0);
  CHECK(zeros[3] == 0);
  CHECK(zeros[4] == 4);
  CHECK(zeros[5] == 0);
}

namespace {
// At before_step, after MagnitudePruning: the largest |gradient| of a pruned (zero) weight.
struct PrunedGrad {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::before_step>;
  using runs_after = type_list<methods::MagnitudePruning>;
  std::int64_t zeros = 0;
  float max_abs = 0.f;
  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    ctx.model.for_each_parameter([&](auto& p, auto& g) {
      for (Eigen::Index i = 0; i < p.size(); ++i)
        if (p.data()[i] == 0.f) {
          ++zeros;
          max_abs = std::max(max_abs, std::fabs(g.data()[i]));
        }
    });
  }
};
}  // namespace

TEST_CASE("MagnitudePruning: the optimizer sees zero gradients for pruned weights; clipping sees them masked") {
  const auto train = fixtures::blobs(64, 1);
  data::Loader loader(train, {.batch_size = 8, .seed = 1, .prefetch = 0});
  PruneNet net = prune_net(3);
  Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, PrunedGrad{},
            methods::GradientClipping::by_norm(1.f),
            methods::MagnitudePruning{{.target_sparsity = 0.6f, .start = 2_ba, .end = 10_ba, .update_every = 4}}};
  // Listed last, pruning is moved before GradientClipping.
  static_assert(std::is_same_v<std::tuple_element_t<0, decltype(t)::methods_tuple>, methods::MagnitudePruning>);
  (void)t.fit(loader, nullptr, quiet(12_ba));
  // Steps 5-12 start with 39, 39, 39, 39, 66, 66, 67, 67 pruned weights.
  CHECK(t.method<PrunedGrad>().zeros == 4 * 39 + 2 * 66 + 2 * 67);
  CHECK(t.method<PrunedGrad>().max_abs == 0.f);
}

TEST_CASE("MagnitudePruning: with EMA the model still ends exactly sparse") {
  const auto train = fixtures::blobs(64, 1);
  data::Loader loader(train, {.batch_size = 8, .seed = 1, .prefetch = 0});
  PruneNet net = prune_net(3);
  Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
            methods::MagnitudePruning{{.target_sparsity = 0.6f, .start = 2_ba, .end = 10_ba, .update_every = 4}},
            methods::EMA{{.half_life = Duration(4, Unit::batch)}}};
  // Listed first, pruning is moved after EMA.
  static_assert(std::is_same_v<std::tuple_element_t<0, decltype(t)::methods_tuple>, methods::EMA>);
  (void)t.fit(loader, nullptr, quiet(16_ba));
  CHECK(zeros_in(net.layer<0>().weight) == 38);
  CHECK(zeros_in(net.layer<2>().weight) == 29);
  // The model holds the average (not the last raw weights), masked.
  const B::matrix avg = t.method<methods::EMA>().averaged().front();
  const B::matrix& mask = t.method<methods::MagnitudePruning>().masks().front();
  CHECK(net.layer<0>().weight == B::matrix(avg.array() * mask.array()));
}

TEST_CASE("MagnitudePruning: bad options throw config_error naming the field") {
  using O = methods::MagnitudePruningOptions;
  using methods::MagnitudePruning;
  auto msg = [](O o) {
    try {
      MagnitudePruning p(o);
    } catch (const config_error& e) {
      return std::string(e.what());
    }
    return std::string("(no config_error)");
  };
  CHECK(msg({.target_sparsity = 1.f}).find("target_sparsity must be in [0, 1)") != std::string::npos);
  CHECK(msg({.target_sparsity = -0.1f}).find("target_sparsity must be in [0, 1)") != std::string::npos);
  CHECK(msg({.target_sparsity = std::nanf("")}).find("target_sparsity") != std::string::npos);
  CHECK(msg({.target_sparsity = 0.5f, .initial_sparsity = 0.6f}).find("initial_sparsity must be in [0, ") !=
        std::string::npos);
  CHECK(msg({.initial_sparsity = -0.1f}).find("initial_sparsity") != std::string::npos);
  CHECK(msg({.start = Duration(-1, Unit::dur)}).find("start must be >= 0") != std::string::npos);
  CHECK(msg({.start = 0.7_dur, .end = 0.7_dur}).find("end must be later than start") != std::string::npos);
  CHECK(msg({.start = 20_ba, .end = 10_ba}).find("end must be later than start") != std::string::npos);
  CHECK(msg({.start = 1_ep, .end = 500_ba}).find("end must be in the same unit as start") != std::string::npos);
  CHECK(msg({.end = 1.5_dur}).find("end must be <= 1dur") != std::string::npos);
  CHECK(msg({.update_every = 0}).find("update_every must be >= 1") != std::string::npos);
  CHECK(msg({}) == "(no config_error)");
  CHECK(msg({.target_sparsity = 0.9f, .initial_sparsity = 0.9f, .start = 0_ep, .end = 3_ep, .update_every = 1}) ==
        "(no config_error)");
  static_assert(MagnitudePruning::tag.comp == component::model);
  static_assert(MagnitudePruning::tag.act == action::remove);
}

TEST_CASE("MagnitudePruning: state round-trips through an archive; reset starts afresh") {
  const auto train = fixtures::blobs(64, 1);
  data::Loader loader(train, {.batch_size = 8, .seed = 1, .prefetch = 0});
  PruneNet net = prune_net(3);
  const methods::MagnitudePruningOptions o{.target_sparsity = 0.6f, .start = 2_ba, .end = 10_ba, .update_every = 4};
  Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, methods::MagnitudePruning{o}};
  (void)t.fit(loader, nullptr, quiet(9_ba));  // after the update at step 8, before end
  auto& p = t.method<methods::MagnitudePruning>();
  REQUIRE(p.masks().size() == 2);
  REQUIRE_FALSE(p.finished());

  io::StateWriter w;
  p.state(w);
  methods::MagnitudePruning q(o);
  io::StateReader r(w.bytes(), "memory");
  q.state(r);
  r.finish();
  REQUIRE(q.masks().size() == 2);
  CHECK(q.masks()[0] == p.masks()[0]);
  CHECK(q.masks()[1] == p.masks()[1]);
  CHECK(q.current_target() == p.current_target());
  CHECK(q.current_target() == doctest::Approx(0.590625));
  CHECK_FALSE(q.finished());
  CHECK(q.sparsity() == doctest::Approx((38.0 + 28.0) / 112.0));

  // Another configuration is refused, naming the hyperparameter.
  methods::MagnitudePruningOptions o2 = o;
  o2.target_sparsity = 0.7f;
  methods::MagnitudePruning other(o2);
  io::StateReader r2(w.bytes(), "memory");
  CHECK_THROWS_WITH_AS(other.state(r2), doctest::Contains("target_sparsity"), config_error);

  q.reset();
  CHECK(q.masks().empty());
  CHECK(q.sparsity() == 0.0);
  CHECK(q.current_target() == 0.0);
}

TEST_CASE("MagnitudePruning: a run resumed from any checkpoint ends bitwise identical") {
  const auto train = fixtures::blobs(96, 1);
  const std::string dir = fresh_dir("magnitude_pruning");
  data::Loader loader(train, {.batch_size = 8, .shuffle = true, .seed = 2, .prefetch = 0});
  const FitOptions opt = quiet(25_ba);
  const methods::MagnitudePruningOptions o{.target_sparsity = 0.6f, .start = 2_ba, .end = 14_ba, .update_every = 4};
  PruneNet ref_net = prune_net(4);
  Trainer ref{ref_net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
              methods::MagnitudePruning{o}, methods::Checkpoint{{.dir = dir, .every = 3_ba, .keep = 0}}};
  (void)ref.fit(loader, nullptr, opt);
  const auto all = io::list_checkpoints(dir);
  REQUIRE(all.size() == 8);  // steps 3, 6, ..., 24 of 25: before, between and after the updates
  for (const auto& [at, path] : all) {
    const std::int64_t step = at;  // clang 14 cannot capture a structured binding
    CAPTURE(step);
    PruneNet net = prune_net(99);  // different weights: the checkpoint must replace them
    Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
              methods::MagnitudePruning{o}, methods::Checkpoint{{.dir = dir + "/again", .every = 3_ba}}};
    FitOptions ro = opt;
    ro.resume_from = path;
    (void)t.fit(loader, nullptr, ro);
    CHECK(net.layer<0>().weight == ref_net.layer<0>().weight);
    CHECK(net.layer<2>().weight == ref_net.layer<2>().weight);
    CHECK(net.layer<2>().bias == ref_net.layer<2>().bias);
    CHECK(t.method<methods::MagnitudePruning>().masks() == ref.method<methods::MagnitudePruning>().masks());
  }
  fs::remove_all(dir);
}
