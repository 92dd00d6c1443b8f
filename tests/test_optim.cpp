// Optimizers, schedules and Time: exact expected values.
#include <doctest/doctest.h>

#include <cmath>
#include <fasttrain/optim/optim.hpp>

using namespace fasttrain;
using namespace fasttrain::literals;
using Mat = cpu::eigen::matrix;

namespace {
// The smallest "model" an optimizer accepts: one parameter matrix and its gradient.
struct OneParam {
  using backend = cpu::eigen;
  Mat p, g;
  template <class F>
  void for_each_parameter(F&& f) { f(p, g); }
};
OneParam make(float p, float g) {
  OneParam m;
  m.p = Mat::Constant(1, 1, p);
  m.g = Mat::Constant(1, 1, g);
  return m;
}
Time at_epoch(double e, std::int64_t bpe = 100, double total_epochs = 10) {
  Time t;
  t.batches_per_epoch = bpe;
  t.samples_per_epoch = bpe * 10;
  t.max_duration = Duration{total_epochs, Unit::epoch};
  t.epoch = static_cast<std::int64_t>(e);
  t.batch_in_epoch = static_cast<std::int64_t>((e - std::floor(e)) * bpe);
  t.batch = static_cast<std::int64_t>(e * bpe);
  t.sample = t.batch * 10;
  return t;
}
}  // namespace

TEST_CASE("SGD: plain, momentum, Nesterov and decoupled weight decay, step by step") {
  SUBCASE("plain") {
    auto m = make(1.f, 0.5f);
    optim::SGD opt{{.lr = 0.1f}};
    opt.step(m);
    CHECK(m.p(0) == doctest::Approx(1.f - 0.05f));
    opt.step(m, 0.5f);  // schedule multiplier halves the rate
    CHECK(m.p(0) == doctest::Approx(0.95f - 0.025f));
  }
  SUBCASE("momentum") {
    auto m = make(1.f, 1.f);
    optim::SGD opt{{.lr = 0.1f, .momentum = 0.9f}};
    opt.step(m);  // v = 1,   p = 1 - 0.1
    opt.step(m);  // v = 1.9, p = 0.9 - 0.19
    CHECK(m.p(0) == doctest::Approx(0.71f));
  }
  SUBCASE("nesterov") {
    auto m = make(1.f, 1.f);
    optim::SGD opt{{.lr = 0.1f, .momentum = 0.9f, .nesterov = true}};
    opt.step(m);  // v = 1,   d = 1 + 0.9   -> p = 1 - 0.19
    opt.step(m);  // v = 1.9, d = 1 + 1.71  -> p = 0.81 - 0.271
    CHECK(m.p(0) == doctest::Approx(0.539f));
  }
  SUBCASE("decoupled weight decay shrinks weights without a gradient, scaled by the schedule") {
    auto m = make(2.f, 0.f);
    optim::SGD opt{{.lr = 0.1f, .weight_decay = 0.01f}};
    opt.step(m);
    CHECK(m.p(0) == doctest::Approx(2.f * 0.99f));
    opt.step(m, 0.5f);
    CHECK(m.p(0) == doctest::Approx(2.f * 0.99f * 0.995f));
  }
}

TEST_CASE("SGD and AdamW reject impossible hyperparameters with a message naming them") {
  CHECK_THROWS_WITH_AS(optim::SGD({.lr = -1.f}), doctest::Contains("lr must be positive"), config_error);
  CHECK_THROWS_WITH_AS(optim::SGD({.lr = 0.1f, .momentum = 1.f}), doctest::Contains("momentum"), config_error);
  CHECK_THROWS_WITH_AS(optim::SGD({.lr = 0.1f, .nesterov = true}), doctest::Contains("nesterov"), config_error);
  CHECK_THROWS_WITH_AS(optim::SGD({.lr = NAN}), doctest::Contains("lr"), config_error);
  CHECK_THROWS_WITH_AS(optim::AdamW({.lr = 1e-3f, .beta2 = 1.f}), doctest::Contains("beta2"), config_error);
  CHECK_THROWS_WITH_AS(optim::AdamW({.lr = 1e-3f, .eps = 0.f}), doctest::Contains("eps"), config_error);
}

TEST_CASE("AdamW: the first step moves each weight by lr against its gradient's sign") {
  auto m = make(1.f, 123.f);
  optim::AdamW opt{{.lr = 0.01f, .weight_decay = 0.f}};
  opt.step(m);
  CHECK(m.p(0) == doctest::Approx(0.99f).epsilon(1e-5));
  auto n = make(1.f, -1e-3f);
  optim::AdamW opt2{{.lr = 0.01f, .weight_decay = 0.f}};
  opt2.step(n);
  CHECK(n.p(0) == doctest::Approx(1.01f).epsilon(1e-4));
}

TEST_CASE("AdamW: minimises a quadratic, and decays weights without gradient") {
  auto m = make(5.f, 0.f);
  optim::AdamW opt{{.lr = 0.1f, .weight_decay = 0.f}};
  for (int i = 0; i < 500; ++i) {
    m.g(0) = 2.f * (m.p(0) - 3.f);  // d/dp (p - 3)^2
    opt.step(m);
  }
  CHECK(m.p(0) == doctest::Approx(3.f).epsilon(0.01));
  auto d = make(1.f, 0.f);
  optim::AdamW decay{{.lr = 0.1f, .weight_decay = 0.1f}};
  decay.step(d);
  CHECK(d.p(0) == doctest::Approx(0.9f));
}

TEST_CASE("Time: units, ratios and the budget fraction") {
  Time t = at_epoch(2.5);
  CHECK(t.in(Unit::epoch) == doctest::Approx(2.5));
  CHECK(t.in(Unit::batch) == 250);
  CHECK(t.ratio(5_ep) == doctest::Approx(0.5));
  CHECK(t.ratio(100_ba) == doctest::Approx(2.5));
  CHECK(t.fraction() == doctest::Approx(0.25));
  CHECK(t.reached(2_ep));
  CHECK_FALSE(t.reached(3_ep));
  CHECK(t.reached(0.25_dur));
  CHECK_FALSE(t.reached(0.3_dur));
  CHECK(t.total_batches() == 1000);
  CHECK((1.5_ep).value == 1.5);
  CHECK((30_sec).unit == Unit::second);
  CHECK((0.7_dur).str() == "0.7dur");
  CHECK((100_ba).str() == "100ba");
}

TEST_CASE("schedules: exact values at known times") {
  CHECK(schedule::constant{}(at_epoch(3)) == 1.f);

  schedule::step st{3_ep, 0.1f};
  CHECK(st(at_epoch(2.9)) == doctest::Approx(1.f));
  CHECK(st(at_epoch(3)) == doctest::Approx(0.1f));
  CHECK(st(at_epoch(6.5)) == doctest::Approx(0.01f));

  schedule::cosine cos{0.1f};
  CHECK(cos(at_epoch(0)) == doctest::Approx(1.f));
  CHECK(cos(at_epoch(5)) == doctest::Approx(0.55f));
  CHECK(cos(at_epoch(10)) == doctest::Approx(0.1f));

  schedule::linear_warmup w{2_ep};
  CHECK(w(at_epoch(0)) == 0.f);
  CHECK(w(at_epoch(1)) == doctest::Approx(0.5f));
  CHECK(w(at_epoch(2)) == 1.f);
  CHECK(w(at_epoch(7)) == 1.f);

  // Composition: warmup, then cosine.
  auto wc = schedule::linear_warmup(0.1_dur) * schedule::cosine();
  CHECK(wc(at_epoch(0.5)) == doctest::Approx(0.5f * 0.5f * (1 + std::cos(M_PI * 0.05))));
  CHECK(wc(at_epoch(5)) == doctest::Approx(0.5f));
  CHECK(wc(at_epoch(10)) == doctest::Approx(0.f).epsilon(1e-6));

  schedule::one_cycle oc{0.3f, 25.f, 1e4f};
  CHECK(oc(at_epoch(0)) == doctest::Approx(1.f / 25));
  CHECK(oc(at_epoch(3)) == doctest::Approx(1.f));
  CHECK(oc(at_epoch(10)) == doctest::Approx(1.f / 25 / 1e4).epsilon(1e-3));
  CHECK(oc(at_epoch(1.5)) > oc(at_epoch(1)));
  CHECK(oc(at_epoch(6)) < oc(at_epoch(4)));

  // Stateless: evaluating out of order gives the same values.
  CHECK(oc(at_epoch(1)) == oc(at_epoch(1)));
}

TEST_CASE("schedules reject impossible parameters") {
  CHECK_THROWS_AS(schedule::step(0_ep), config_error);
  CHECK_THROWS_AS(schedule::cosine(2.f), config_error);
  CHECK_THROWS_AS(schedule::linear_warmup(0_ep), config_error);
  CHECK_THROWS_AS(schedule::one_cycle(1.5f), config_error);
}

TEST_CASE("an optimizer refuses a model that does not match its state, until reset()") {
  auto a = make(1.f, 1.f);
  OneParam big;
  big.p = Mat::Ones(2, 3);
  big.g = Mat::Ones(2, 3);
  optim::SGD sgd{{.lr = 0.1f, .momentum = 0.9f}};
  sgd.step(a);
  CHECK_THROWS_WITH_AS(sgd.step(big), doctest::Contains("do not match the optimizer's state"), config_error);
  sgd.reset();
  sgd.step(big);
  CHECK(big.p(0) == doctest::Approx(0.9f));
  optim::AdamW adam{{.lr = 0.1f}};
  adam.step(a);
  CHECK_THROWS_AS(adam.step(big), config_error);
  CHECK(adam.steps() == 1);
  OneParam nograd;
  nograd.p = Mat::Ones(2, 2);
  CHECK_THROWS_WITH_AS(optim::SGD{}.step(nograd), doctest::Contains("no backward pass"), shape_error);
}
