// Optimizers, schedules and Time: exact expected values. Also the optimization methods that
// replace or wrap the optimizer: LARS, LAMB and Lookahead.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fasttrain/fasttrain.hpp>
#include <fasttrain/optim/optim.hpp>

#include "fixtures.hpp"
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

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

// ---- LARS, LAMB and Lookahead --------------------------------------------------------------

namespace {
// A 2x2 weight and a 2x1 bias (one column: LARS and LAMB treat it as a vector), with gradients.
struct WeightBias {
  using backend = cpu::eigen;
  Mat w, gw, b, gb;
  template <class F>
  void for_each_parameter(F&& f) {
    f(w, gw);
    f(b, gb);
  }
};
Mat mat2(float a, float b, float c, float d) {  // [[a, b], [c, d]]
  Mat m(2, 2);
  m << a, b, c, d;
  return m;
}
Mat col2(float a, float b) {
  Mat m(2, 1);
  m << a, b;
  return m;
}
void check_close(const Mat& got, const Mat& want) {
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  for (Eigen::Index i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got(i) == doctest::Approx(want(i)).epsilon(1e-6));
  }
}
// The gradients of 0.5 ||w - [[1, 2], [-1, 0.5]]||^2 + 0.5 ||b - [-1, 2]||^2 at the weights.
void quadratic_gradient(WeightBias& m) {
  m.gw = m.w - mat2(1, 2, -1, 0.5f);
  m.gb = m.b - col2(-1, 2);
}
template <class T>
std::string save_state(T& x) {
  io::StateWriter w;
  x.state(w);
  return w.take();
}
template <class T>
void load_state(T& x, const std::string& bytes) {
  io::StateReader r(bytes, "memory");
  x.state(r);
  r.finish();
}
}  // namespace

TEST_CASE("LARS: trust ratio, momentum and coupled weight decay, step by step; vectors take SGD-momentum steps") {
  // W = [[3, 0], [0, 4]] with gW = [[0, 0.6], [0.8, 0]]; b = [3, -4] with gb = [0.6, 0.8].
  WeightBias m{mat2(3, 0, 0, 4), mat2(0, 0.6f, 0.8f, 0), col2(3, -4), col2(0.6f, 0.8f)};
  SUBCASE("two steps with momentum and weight decay") {
    methods::LARS opt{{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.2f, .trust_coefficient = 0.02f}};
    // Step 1: ||W|| = 5, ||gW|| = 1: local = 0.02 * 5 / (1 + 0.2 * 5) = 0.05.
    //   gW + 0.2 W = [[0.6, 0.6], [0.8, 0.8]]; v = 0.1 * 0.05 * that = [[0.003, 0.003], [0.004, 0.004]];
    //   W = [[2.997, -0.003], [-0.004, 3.996]].
    //   The bias (local 1, no decay): v = 0.1 gb = [0.06, 0.08], b = [2.94, -4.08].
    opt.step(m);
    check_close(m.w, mat2(2.997f, -0.003f, -0.004f, 3.996f));
    check_close(m.b, col2(2.94f, -4.08f));
    check_close(opt.velocity()[0], mat2(0.003f, 0.003f, 0.004f, 0.004f));
    // Step 2, same gradients: ||W||^2 = 2.997^2 + 0.003^2 + 0.004^2 + 3.996^2 = 24.95005,
    //   ||W|| = 4.9950025; local = 0.02 * 4.9950025 / (1 + 0.2 * 4.9950025) = 0.09990005 / 1.9990005
    //   = 0.049975. gW + 0.2 W = [[0.5994, 0.5994], [0.7992, 0.7992]];
    //   v = 0.9 v + 0.1 * 0.049975 * that = [[0.0027 + 0.0029955, ..], [0.0036 + 0.003994, ..]]
    //     = [[0.0056955, 0.0056955], [0.007594, 0.007594]];
    //   W = [[2.9913045, -0.0086955], [-0.011594, 3.988406]].
    //   The bias: v = 0.9 [0.06, 0.08] + [0.06, 0.08] = [0.114, 0.152], b = [2.826, -4.232].
    opt.step(m);
    check_close(m.w, mat2(2.9913045f, -0.0086955f, -0.011594f, 3.988406f));
    check_close(m.b, col2(2.826f, -4.232f));
  }
  SUBCASE("adapt_vectors: the bias gets the local rate and the decay too") {
    methods::LARS opt{{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.2f, .trust_coefficient = 0.02f,
                       .adapt_vectors = true}};
    // ||b|| = 5, ||gb|| = 1: local = 0.05; gb + 0.2 b = [1.2, 0]; v = 0.005 [1.2, 0]; b = [2.994, -4].
    opt.step(m);
    check_close(m.b, col2(2.994f, -4.f));
    check_close(m.w, mat2(2.997f, -0.003f, -0.004f, 3.996f));
  }
  SUBCASE("a zero weight takes a plain step (local 1), scaled by the schedule multiplier") {
    m.w.setZero();
    methods::LARS opt{{.lr = 0.1f, .momentum = 0.9f, .weight_decay = 0.2f, .trust_coefficient = 0.02f}};
    opt.step(m, 0.5f);  // v = 0.1 * 0.5 * (gW + 0.2 * 0) = [[0, 0.03], [0.04, 0]]
    check_close(m.w, mat2(0, -0.03f, -0.04f, 0));
    check_close(m.b, col2(2.97f, -4.04f));  // v = 0.05 gb = [0.03, 0.04]
  }
  SUBCASE("without momentum: no velocity, p -= lr * local * (g + wd * p)") {
    methods::LARS opt{{.lr = 0.1f, .momentum = 0.f, .weight_decay = 0.2f, .trust_coefficient = 0.02f}};
    opt.step(m);  // the first step of the first subcase: momentum does not enter it
    check_close(m.w, mat2(2.997f, -0.003f, -0.004f, 3.996f));
    CHECK(opt.velocity().empty());
    opt.step(m);  // local = 0.049975 (as above), W -= 0.1 * 0.049975 * [[0.5994, ..], [0.7992, ..]]
    check_close(m.w, mat2(2.997f - 0.0029955f, -0.003f - 0.0029955f, -0.004f - 0.003994f, 3.996f - 0.003994f));
  }
  static_assert(methods::LARS::tag.comp == component::optimization && methods::LARS::tag.act == action::replace);
}

TEST_CASE("LAMB: bias-corrected moments, decoupled decay and the trust ratio, step by step") {
  // W = [[3, 0], [0, 4]], b = [1, -1]. Gradients at step 1: gW = [[1, -2], [0.5, -0.25]],
  // gb = [0.5, -2]; at step 2: gW = [[-1, 1], [0.5, 0.25]], gb = [0.5, 1].
  WeightBias m{mat2(3, 0, 0, 4), mat2(1, -2, 0.5f, -0.25f), col2(1, -1), col2(0.5f, -2)};
  SUBCASE("two steps") {
    methods::LAMB opt{{.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-6f, .weight_decay = 0.1f}};
    // Step 1: m1 = 0.1 g, m2 = 0.001 g^2; the corrections 1 / 0.1 and 1 / 0.001 give mhat = g,
    //   vhat = g^2: mhat / (sqrt(vhat) + eps) = sign(g) |g| / (|g| + 1e-6)
    //   = [[0.999999, -0.9999995], [0.999998, -0.999996]].
    //   r = that + 0.1 W = [[1.299999, -0.9999995], [0.999998, -0.599996]]; ||r||^2 = 4.0499876,
    //   ||r|| = 2.0124581; ||W|| = 5; trust = 5 / 2.0124581 = 2.4845238.
    //   W -= 0.01 * 2.4845238 * r = [[0.0322988, -0.0248452], [0.0248452, -0.0149070]]
    //   W = [[2.9677012, 0.0248452], [-0.0248452, 4.0149070]].
    //   The bias (trust 1, no decay): b -= 0.01 [0.999998, -0.9999995]: b = [0.99000002, -0.99].
    opt.step(m);
    check_close(m.w, mat2(2.9677012f, 0.0248452f, -0.0248452f, 4.014907f));
    check_close(m.b, col2(0.99000002f, -0.99f));
    // Step 2 (schedule multiplier 0.5):
    //   m1 = 0.9 * 0.1 g1 + 0.1 g2 = [[0.09 - 0.1, -0.18 + 0.1], [0.045 + 0.05, -0.0225 + 0.025]]
    //      = [[-0.01, -0.08], [0.095, 0.0025]];
    //   m2 = 0.999 * 0.001 g1^2 + 0.001 g2^2 = [[0.000999 + 0.001, 0.003996 + 0.001],
    //        [0.00024975 + 0.00025, 0.0000624375 + 0.0000625]] = [[0.001999, 0.004996], [0.00049975, 0.0001249375]];
    //   corrections 1 / (1 - 0.9^2) = 1 / 0.19 and 1 / (1 - 0.999^2) = 1 / 0.001999:
    //   mhat = [[-0.0526316, -0.4210526], [0.5, 0.0131579]], vhat = [[1, 2.4992496], [0.25, 0.0625]],
    //   sqrt(vhat) = [[1, 1.5809015], [0.5, 0.25]];
    //   mhat / (sqrt(vhat) + eps) = [[-0.0526315, -0.2663369], [0.999998, 0.0526314]];
    //   r = that + 0.1 W = [[-0.0526315 + 0.2967701, -0.2663369 + 0.0024845],
    //                       [0.999998 - 0.0024845, 0.0526314 + 0.4014907]]
    //     = [[0.2441386, -0.2638523], [0.9975135, 0.4541221]]; ||r||^2 = 1.3304817, ||r|| = 1.1534651;
    //   ||W||^2 = 2.9677012^2 + 2 * 0.0248452^2 + 4.014907^2 = 24.9279621, ||W|| = 4.9927912;
    //   trust = 4.9927912 / 1.1534651 = 4.3285152; W -= 0.01 * 0.5 * 4.3285152 * r = 0.0216426 r:
    //   W = [[2.9677012 - 0.0052838, 0.0248452 + 0.0057104], [-0.0248452 - 0.0215887, 4.014907 - 0.0098283]]
    //     = [[2.9624174, 0.0305557], [-0.0464339, 4.0050787]].
    //   The bias: m1 = [0.045 + 0.05, -0.18 + 0.1] = [0.095, -0.08], m2 = [0.00049975, 0.004996]:
    //   mhat = [0.5, -0.4210526], vhat = [0.25, 2.4992496], direction [0.999998, -0.2663369];
    //   b -= 0.005 * that: b = [0.99000002 - 0.00499999, -0.99 + 0.00133168] = [0.98500003, -0.98866832].
    m.gw = mat2(-1, 1, 0.5f, 0.25f);
    m.gb = col2(0.5f, 1);
    opt.step(m, 0.5f);
    check_close(m.w, mat2(2.9624174f, 0.0305557f, -0.0464339f, 4.0050787f));
    check_close(m.b, col2(0.98500003f, -0.98866832f));
    CHECK(opt.steps() == 2);
    opt.reset();
    CHECK(opt.steps() == 0);
    CHECK(opt.first_moments().empty());
  }
  SUBCASE("adapt_vectors: the bias gets the trust ratio and the decay too") {
    m.b = col2(3, -4);
    m.gb = col2(1, 1);
    methods::LAMB opt{{.lr = 0.01f, .weight_decay = 0.1f, .adapt_vectors = true}};
    // direction [0.999999, 0.999999] + 0.1 b = [1.299999, 0.599999]; ||r|| = sqrt(2.05) = 1.4317808;
    // trust = 5 / 1.4317808 = 3.4921547; b -= 0.034921547 r = [3 - 0.0453980, -4 - 0.0209529].
    opt.step(m);
    check_close(m.b, col2(2.954602f, -4.0209529f));
  }
  SUBCASE("a zero weight takes a plain Adam step (trust 1)") {
    m.w.setZero();
    methods::LAMB opt{{.lr = 0.01f, .weight_decay = 0.1f}};
    opt.step(m);  // W -= 0.01 * sign(gW) (the decay of a zero weight is zero)
    check_close(m.w, mat2(-0.00999999f, 0.00999999f, -0.00999998f, 0.00999996f));
  }
  static_assert(methods::LAMB::tag.comp == component::optimization && methods::LAMB::tag.act == action::replace);
}

TEST_CASE("LARS and LAMB refuse a missing gradient and a model that does not match their state, until reset()") {
  auto a = make(1.f, 1.f);
  OneParam big;
  big.p = Mat::Ones(2, 3);
  big.g = Mat::Ones(2, 3);
  methods::LARS lars;
  lars.step(a);
  CHECK_THROWS_WITH_AS(lars.step(big), doctest::Contains("LARS: the model's parameters do not match"), config_error);
  lars.reset();
  CHECK_NOTHROW(lars.step(big));
  methods::LAMB lamb;
  lamb.step(a);
  CHECK_THROWS_WITH_AS(lamb.step(big), doctest::Contains("LAMB: the model's parameters do not match"), config_error);
  CHECK(lamb.steps() == 1);
  lamb.reset();
  CHECK_NOTHROW(lamb.step(big));
  OneParam nograd;
  nograd.p = Mat::Ones(2, 2);
  CHECK_THROWS_WITH_AS(methods::LARS{}.step(nograd), doctest::Contains("no backward pass"), shape_error);
  CHECK_THROWS_WITH_AS(methods::LAMB{}.step(nograd), doctest::Contains("no backward pass"), shape_error);
}

TEST_CASE("Lookahead: the slow weights follow the fast ones every k steps, and not before") {
  // p = 1 and a constant gradient 1 under plain SGD, lr 0.1: every step moves the fast weight
  // by -0.1. k = 3, alpha = 0.5. The slow weight starts at 1 (fit_begin).
  //   steps 1, 2: fast 0.9, 0.8; slow 1.
  //   step 3: fast 0.7, then slow = 1 + 0.5 (0.7 - 1) = 0.85 and fast = 0.85.
  //   steps 4, 5: fast 0.75, 0.65.
  //   step 6: fast 0.55, then slow = 0.85 + 0.5 (0.55 - 0.85) = 0.7 and fast = 0.7.
  //   step 7: fast 0.6.
  auto m = make(1.f, 1.f);
  optim::SGD opt{{.lr = 0.1f}};
  methods::Lookahead la{{.k = 3, .alpha = 0.5f}};
  Time time;
  float multiplier = 1.f;
  FitContext<OneParam, optim::SGD> fctx{m, opt, time};
  StepContext<OneParam, optim::SGD> sctx{m, opt, multiplier, time};
  la.on_fit_begin(fctx);
  REQUIRE(la.slow().size() == 1);
  CHECK(la.slow()[0](0) == 1.f);
  const float fast[] = {0.9f, 0.8f, 0.85f, 0.75f, 0.65f, 0.7f, 0.6f};
  const float slow[] = {1.f, 1.f, 0.85f, 0.85f, 0.85f, 0.7f, 0.7f};
  const std::int64_t syncs[] = {0, 0, 1, 1, 1, 2, 2};
  for (int s = 0; s < 7; ++s) {
    CAPTURE(s);
    time.batch = s;  // steps done before this one
    opt.step(m, multiplier);
    la.on_after_step(sctx);
    CHECK(m.p(0) == doctest::Approx(fast[s]));
    CHECK(la.slow()[0](0) == doctest::Approx(slow[s]));
    CHECK(la.syncs() == syncs[s]);
  }
  la.reset();
  CHECK(la.slow().empty());
  CHECK(la.syncs() == 0);
  // alpha = 1: the slow weights jump to the fast ones; training is that of the optimizer alone.
  auto n = make(1.f, 1.f);
  methods::Lookahead one{{.k = 2, .alpha = 1.f}};
  StepContext<OneParam, optim::SGD> nctx{n, opt, multiplier, time};
  FitContext<OneParam, optim::SGD> nfctx{n, opt, time};
  one.on_fit_begin(nfctx);
  for (int s = 0; s < 4; ++s) {
    time.batch = s;
    opt.step(n, multiplier);
    one.on_after_step(nctx);
  }
  CHECK(n.p(0) == doctest::Approx(0.6f));
  CHECK(one.slow()[0](0) == doctest::Approx(0.6f));
  static_assert(Method<methods::Lookahead>);
}

TEST_CASE("LARS, LAMB and Lookahead reject impossible hyperparameters with a message naming them") {
  CHECK_THROWS_WITH_AS(methods::LARS({.lr = 0.f}), doctest::Contains("LARS: lr must be positive and finite, got 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::LARS({.lr = NAN}), doctest::Contains("lr must be positive"), config_error);
  CHECK_THROWS_WITH_AS(methods::LARS({.momentum = 1.f}), doctest::Contains("momentum must be in [0, 1), got 1"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::LARS({.weight_decay = -0.1f}), doctest::Contains("weight_decay must be >= 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::LARS({.trust_coefficient = 0.f}),
                       doctest::Contains("trust_coefficient must be positive and finite, got 0"), config_error);
  CHECK_THROWS_WITH_AS(methods::LARS({.eps = -1e-8f}), doctest::Contains("eps must be >= 0"), config_error);
  CHECK_NOTHROW(methods::LARS({.momentum = 0.f, .eps = 0.f}));

  CHECK_THROWS_WITH_AS(methods::LAMB({.lr = -1e-3f}), doctest::Contains("LAMB: lr must be positive"), config_error);
  CHECK_THROWS_WITH_AS(methods::LAMB({.beta1 = 1.f}), doctest::Contains("beta1 must be in [0, 1), got 1"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::LAMB({.beta2 = -0.5f}), doctest::Contains("beta2 must be in [0, 1), got -0.5"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::LAMB({.eps = 0.f}), doctest::Contains("eps must be positive"), config_error);
  CHECK_THROWS_WITH_AS(methods::LAMB({.weight_decay = INFINITY}), doctest::Contains("weight_decay must be >= 0 and finite"),
                       config_error);

  CHECK_THROWS_WITH_AS(methods::Lookahead({.k = 0}), doctest::Contains("Lookahead: k must be >= 1, got 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::Lookahead({.alpha = 0.f}), doctest::Contains("alpha must be in (0, 1], got 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::Lookahead({.alpha = 1.5f}), doctest::Contains("alpha must be in (0, 1], got 1.5"),
                       config_error);
  CHECK_NOTHROW(methods::Lookahead({.k = 1, .alpha = 1.f}));
}

TEST_CASE("LARS and LAMB: state saved and restored into a fresh optimizer continues identically") {
  // Three steps on a quadratic, save; three more. A fresh optimizer restored from the saved
  // state, from the saved weights, must take the same three steps bitwise; one that is not
  // restored must not (so the comparison can fail).
  auto check = [](auto opt, auto fresh, auto unrestored) {
    WeightBias m{mat2(3, 0, 0, 4), Mat(), col2(3, -4), Mat()};
    for (int s = 0; s < 3; ++s) {
      quadratic_gradient(m);
      opt.step(m);
    }
    const WeightBias at3 = m;
    const std::string bytes = save_state(opt);
    for (int s = 0; s < 3; ++s) {
      quadratic_gradient(m);
      opt.step(m, 0.5f);
    }
    WeightBias r = at3, u = at3;
    load_state(fresh, bytes);
    for (int s = 0; s < 3; ++s) {
      quadratic_gradient(r);
      fresh.step(r, 0.5f);
      quadratic_gradient(u);
      unrestored.step(u, 0.5f);
    }
    CHECK(r.w == m.w);
    CHECK(r.b == m.b);
    CHECK(u.w != m.w);
  };
  const methods::LARSOptions lo{.lr = 0.5f, .weight_decay = 0.01f, .trust_coefficient = 0.05f};
  check(methods::LARS(lo), methods::LARS(lo), methods::LARS(lo));
  const methods::LAMBOptions mo{.lr = 0.05f};
  check(methods::LAMB(mo), methods::LAMB(mo), methods::LAMB(mo));

  // Another hyperparameter is refused, naming it.
  methods::LARS lars(lo);
  const std::string lars_bytes = save_state(lars);
  methods::LARS other({.lr = 0.5f, .weight_decay = 0.01f, .trust_coefficient = 0.02f});
  CHECK_THROWS_WITH_AS(load_state(other, lars_bytes), doctest::Contains("trust_coefficient = 0.05"), config_error);
  methods::LAMB lamb(mo);
  const std::string lamb_bytes = save_state(lamb);
  methods::LAMB vectors({.lr = 0.05f, .adapt_vectors = true});
  CHECK_THROWS_WITH_AS(load_state(vectors, lamb_bytes), doctest::Contains("adapt_vectors = 0"), config_error);
}

TEST_CASE("Lookahead: state saved and restored into a fresh method continues identically") {
  // p starts at 5 on 0.5 (p - 1)^2 with SGD + momentum; k = 3. Save after 4 steps (one
  // synchronisation and one step into the next cycle), then run 5 more.
  const methods::LookaheadOptions lo{.k = 3, .alpha = 0.5f};
  const optim::SGDOptions so{.lr = 0.1f, .momentum = 0.9f};
  auto run = [&](OneParam& m, optim::SGD& opt, methods::Lookahead& la, std::int64_t from, std::int64_t to) {
    Time time;
    float multiplier = 1.f;
    StepContext<OneParam, optim::SGD> ctx{m, opt, multiplier, time};
    for (std::int64_t s = from; s < to; ++s) {
      time.batch = s;
      m.g(0) = m.p(0) - 1.f;
      opt.step(m, multiplier);
      la.on_after_step(ctx);
    }
  };
  auto m = make(5.f, 0.f);
  optim::SGD opt(so);
  methods::Lookahead la(lo);
  Time t0;
  FitContext<OneParam, optim::SGD> fctx{m, opt, t0};
  la.on_fit_begin(fctx);
  run(m, opt, la, 0, 4);
  CHECK(la.syncs() == 1);
  const OneParam at4 = m;
  const std::string la_bytes = save_state(la), opt_bytes = save_state(opt);
  run(m, opt, la, 4, 9);
  CHECK(la.syncs() == 3);

  OneParam r = at4;
  optim::SGD ropt(so);
  methods::Lookahead rla(lo);
  load_state(ropt, opt_bytes);
  load_state(rla, la_bytes);
  CHECK(rla.syncs() == 1);
  run(r, ropt, rla, 4, 9);
  CHECK(r.p(0) == m.p(0));
  CHECK(rla.slow()[0](0) == la.slow()[0](0));
  CHECK(rla.syncs() == 3);

  // Without the slow weights (a fresh method) the run goes elsewhere.
  OneParam u = at4;
  optim::SGD uopt(so);
  methods::Lookahead ula(lo);
  load_state(uopt, opt_bytes);
  run(u, uopt, ula, 4, 9);
  CHECK(u.p(0) != m.p(0));

  methods::Lookahead other({.k = 4, .alpha = 0.5f});
  CHECK_THROWS_WITH_AS(load_state(other, la_bytes), doctest::Contains("k = 3"), config_error);
}

namespace {
using OptimNet = nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>>;
std::vector<Mat> weights_of(OptimNet& net) {
  std::vector<Mat> w;
  net.for_each_parameter([&](auto& p, auto&) { w.push_back(p); });
  return w;
}
}  // namespace

TEST_CASE("LARS and LAMB train a small network, alone and under Lookahead") {
  // Overlapping blobs (class means 2 apart, unit noise): about 86% is reachable. 300 steps of
  // 32 samples, cosine decay.
  const auto train = fixtures::blobs(320, 1, 2.f, 1.f), test = fixtures::blobs(300, 2, 2.f, 1.f);
  const FitOptions fo{.max_duration = 30_ep, .progress = ProgressMode::never};
  auto train_loss = [&](OptimNet& net) {
    const cpu::eigen::tensor x{train.features, train.sample_shape};
    return nn::SoftmaxCrossEntropy{}.forward(net.forward(x, nn::Mode::eval), {&train.labels, nullptr});
  };
  auto run = [&](auto opt, auto... methods) {
    data::Loader loader(train, {.batch_size = 32, .seed = 3});
    OptimNet net;
    net.reset_parameters(5);
    const float before = train_loss(net);
    Trainer t{net, std::move(opt), nn::SoftmaxCrossEntropy{}, std::move(methods)...};
    const Result r = t.fit(loader, &test, fo, schedule::cosine());
    const float after = train_loss(net);
    CAPTURE(before);
    CAPTURE(after);
    CHECK(after < 0.15f * before);
    CHECK(after < 0.5f);  // less than half the loss of predicting the class frequencies (ln 3)
    CHECK(r.test_accuracy >= 0.8);
  };
  SUBCASE("LARS") { run(methods::LARS({.lr = 2.f, .weight_decay = 1e-4f, .trust_coefficient = 0.01f})); }
  SUBCASE("LAMB") { run(methods::LAMB({.lr = 0.01f})); }
  SUBCASE("LARS + Lookahead") {
    run(methods::LARS({.lr = 2.f, .weight_decay = 1e-4f, .trust_coefficient = 0.01f}), methods::Lookahead{});
  }
  SUBCASE("LAMB + Lookahead") { run(methods::LAMB({.lr = 0.01f}), methods::Lookahead{}); }
}

TEST_CASE("Lookahead in a Trainer: k-step synchronisations, fit() restarts them, and EMA averages the result") {
  const auto train = fixtures::blobs(96, 1);
  data::Loader loader(train, {.batch_size = 16, .seed = 1});  // 6 steps an epoch
  const FitOptions fo{.max_duration = 2_ep, .progress = ProgressMode::never};
  for (const std::int64_t k : {4, 5}) {
    CAPTURE(k);
    OptimNet net;
    net.reset_parameters(1);
    Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
              methods::Lookahead{{.k = k}}};
    for (int fit = 0; fit < 2; ++fit) {  // the second fit starts afresh (reset, fit_begin)
      (void)t.fit(loader, nullptr, fo);
      const auto& la = t.method<methods::Lookahead>();
      CHECK(la.syncs() == 12 / k);
      const auto w = weights_of(net);
      REQUIRE(la.slow().size() == w.size());
      // 12 steps: a synchronisation after the last for k = 4 leaves fast == slow; k = 5 ends
      // 2 steps past one.
      CHECK((w.front() == la.slow().front()) == (k == 4));
    }
  }
  // EMA is sorted first, so at after_step (reverse order) Lookahead synchronises, then EMA
  // averages the synchronised weights, whichever order the recipe lists them in. With
  // update_every = 2, EMA's first update (after step 2, which synchronises with k = 2) copies
  // the weights: the slow ones, not the fast ones before the synchronisation.
  using sorted = detail::composition<methods::Lookahead, methods::EMA>::sorted_tuple;
  static_assert(std::is_same_v<std::tuple_element_t<0, sorted>, methods::EMA>);
  OptimNet net;
  net.reset_parameters(1);
  Trainer t{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, methods::Lookahead{{.k = 2}},
            methods::EMA{{.update_every = 2, .replace_at_end = false}}};
  (void)t.fit(loader, nullptr, {.max_duration = 2_ba, .progress = ProgressMode::never});
  const auto& slow = t.method<methods::Lookahead>().slow();
  const auto& averaged = t.method<methods::EMA>().averaged();
  REQUIRE(averaged.size() == slow.size());
  for (std::size_t i = 0; i < slow.size(); ++i) CHECK(averaged[i] == slow[i]);
  CHECK(t.method<methods::Lookahead>().syncs() == 1);
}

TEST_CASE("LARS, LAMB and Lookahead: a Trainer run resumed from any checkpoint ends bitwise identical") {
  namespace fs = std::filesystem;
  const auto train = fixtures::blobs(200, 1), test = fixtures::blobs(60, 9);
  auto check = [&](const std::string& name, auto opt) {
    const fs::path dir = fs::temp_directory_path() / ("fasttrain_test_optim_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});
    const FitOptions fo{.max_duration = 2_ep, .progress = ProgressMode::never};  // 26 steps
    OptimNet ref_net;
    ref_net.reset_parameters(4);
    Trainer ref{ref_net, opt, nn::SoftmaxCrossEntropy{}, methods::Lookahead{{.k = 3}},
                methods::Checkpoint{{.dir = dir.string(), .every = 5_ba, .keep = 0}}};
    const Result full = ref.fit(loader, test, fo, schedule::cosine());
    const auto expected = weights_of(ref_net);
    const auto all = io::list_checkpoints(dir.string());
    REQUIRE(all.size() == 5);  // steps 5, 10, ..., 25
    for (const auto& [at, path] : all) {
      const std::int64_t step = at;  // clang 14 cannot capture a structured binding
      CAPTURE(step);
      OptimNet net;
      net.reset_parameters(99);
      Trainer t{net, opt, nn::SoftmaxCrossEntropy{}, methods::Lookahead{{.k = 3}},
                methods::Checkpoint{{.dir = (dir / "again").string(), .every = 5_ba}}};
      FitOptions o = fo;
      o.resume_from = path;
      const Result r = t.fit(loader, test, o, schedule::cosine());
      const auto got = weights_of(net);
      for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == expected[i]);
      CHECK(r.steps == full.steps);
      CHECK(t.template method<methods::Lookahead>().syncs() == ref.template method<methods::Lookahead>().syncs());
    }
    fs::remove_all(dir);
  };
  check("lars", methods::LARS({.lr = 2.f, .trust_coefficient = 0.01f}));
  check("lamb", methods::LAMB({.lr = 0.01f}));
}
