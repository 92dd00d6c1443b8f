// Weight averagers at their defaults are safe on short runs (issue 23): EMA's warm-up and
// its averaged BatchNorm statistics; SWA and Lookahead checked for the same trap.
#include <doctest/doctest.h>

#include <cmath>
#include <fasttrain/fasttrain.hpp>
#include <string>
#include <vector>

#include "fixtures.hpp"

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;

namespace {

// The shape, smaller: three conv blocks with BatchNorm, global average pooling.
using BnCnn = nn::Sequential<nn::Conv2d<1, 8, 3, 1, 1>, nn::BatchNorm2d<8>, nn::ReLU, nn::MaxPool2d<2>,
                             nn::Conv2d<8, 16, 3, 1, 1>, nn::BatchNorm2d<16>, nn::ReLU, nn::MaxPool2d<2>,
                             nn::Conv2d<16, 16, 3, 1, 1>, nn::BatchNorm2d<16>, nn::ReLU, nn::GlobalAvgPool,
                             nn::Linear<16, 3>>;

// Test accuracy of the BatchNorm CNN after `budget` of SGD with `ms`, from the same start.
template <class... Ms>
double accuracy_after(Duration budget, Ms... ms) {
  static const data::Dataset train = fixtures::squares(1536, 1), test = fixtures::squares(300, 2);
  data::Loader loader(train, {.batch_size = 32, .seed = 3, .prefetch = 0});  // 48 steps per epoch
  BnCnn net;
  net.reset_parameters(5);
  Trainer t{net, optim::SGD{{.lr = 0.05f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, std::move(ms)...};
  return t.fit(loader, test, {.max_duration = budget, .progress = ProgressMode::never}).test_accuracy;
}

std::vector<B::matrix> statistics_of(BnCnn& net) {
  std::vector<B::matrix> out;
  nn::visit_layers(net, [&](auto& l) {
    if constexpr (nn::RunningStatistics<decltype(l)>) {
      out.push_back(l.running_mean);
      out.push_back(l.running_var);
    }
  });
  return out;
}

// Records the running statistics after every step: what EMA must average.
struct StatLog {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::after_step>;
  std::vector<std::vector<B::matrix>> seen;
  template <class Ctx>
  void on_after_step(Ctx& ctx) {
    seen.push_back(statistics_of(ctx.model));
  }
};

}  // namespace

TEST_CASE("EMA at its defaults never makes a short run much worse than no EMA (BatchNorm CNN)") {
  // Before the warm-up, 2^(-1/1000) per step from the initial weights left 97% of them in
  // the average after 48 steps: chance accuracy where the raw weights were near 1.
  for (const Duration budget : {Duration(20, Unit::batch), 1_ep, 3_ep}) {
    CAPTURE(budget.str());
    const double plain = accuracy_after(budget);
    const double ema = accuracy_after(budget, methods::EMA{});
    MESSAGE(budget.str(), ": accuracy without EMA ", plain, ", with EMA{} ", ema);
    CHECK(plain > 0.6);  // the run itself learns something
    CHECK(ema >= plain - 0.08);  // before the warm-up: chance (1/3) at 20 steps
  }
}

TEST_CASE("EMA averages BatchNorm running statistics with the weights; evaluation and the end use both") {
  const data::Dataset train = fixtures::squares(256, 1), test = fixtures::squares(60, 2);
  data::Loader loader(train, {.batch_size = 32, .seed = 3, .prefetch = 0});
  BnCnn net;
  net.reset_parameters(5);
  Trainer t{net, optim::SGD{{.lr = 0.05f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
            methods::EMA{{.half_life = 4_ba, .replace_at_end = false}}, StatLog{}};
  (void)t.fit(loader, test, {.max_duration = 1_ep, .progress = ProgressMode::never});
  const auto& ema = t.method<methods::EMA>();
  const auto& log = t.method<StatLog>().seen;
  REQUIRE(log.size() == 8);
  CHECK(ema.updates() == 8);
  // The first update copies; the n-th after it blends with d = min(2^(-1/4), (1+n)/(10+n)).
  std::vector<B::matrix> expect = log[0];
  for (std::size_t n = 1; n < log.size(); ++n) {
    const auto d = static_cast<float>(ema.decay(std::exp2(-0.25), static_cast<std::int64_t>(n)));
    for (std::size_t k = 0; k < expect.size(); ++k) expect[k] = d * expect[k] + (1.f - d) * log[n][k];
  }
  const auto& avg = ema.averaged_statistics();
  REQUIRE(avg.size() == 6);  // mean and variance of 3 BatchNorm layers
  for (std::size_t k = 0; k < avg.size(); ++k) CHECK((avg[k] - expect[k]).cwiseAbs().maxCoeff() < 1e-5f);
  // Evaluation runs with the averaged statistics, then puts the live ones back.
  const auto live = statistics_of(net);
  EvalContext<BnCnn> ectx{net, t.time()};
  t.method<methods::EMA>().on_eval_begin(ectx);
  const auto during = statistics_of(net);
  t.method<methods::EMA>().on_eval_end(ectx);
  for (std::size_t k = 0; k < avg.size(); ++k) CHECK(during[k] == avg[k]);
  CHECK(statistics_of(net) == live);
  CHECK(live != during);
  // replace_at_end: the model ends with both averages.
  BnCnn net2;
  net2.reset_parameters(5);
  Trainer t2{net2, optim::SGD{{.lr = 0.05f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{},
             methods::EMA{{.half_life = 4_ba}}};
  (void)t2.fit(loader, test, {.max_duration = 1_ep, .progress = ProgressMode::never});
  const auto end = statistics_of(net2);
  for (std::size_t k = 0; k < end.size(); ++k) CHECK(end[k] == t2.method<methods::EMA>().averaged_statistics()[k]);
}

TEST_CASE("EMA's warm-up: d = min(a, (1+n)/(10+n)); warmup = false keeps a from the start") {
  const methods::EMA on{}, off{{.warmup = false}};
  const double a = on.smoothing(469);
  CHECK(a == doctest::Approx(std::exp2(-1.0 / 1000)));
  CHECK(on.decay(a, 1) == doctest::Approx(2.0 / 11));
  CHECK(on.decay(a, 90) == doctest::Approx(91.0 / 100));
  CHECK(on.decay(a, 100000) == a);
  CHECK(off.decay(a, 1) == a);
}

TEST_CASE("SWA and Lookahead at their defaults do not wreck short runs either") {
  // SWA averages from 0.7 of the budget and recomputes the BatchNorm statistics; Lookahead
  // restarts the fast weights from slow ones that follow them every 5 steps. Neither starts
  // from the initial weights with a long memory, as EMA did.
  for (const Duration budget : {Duration(20, Unit::batch), 1_ep, 3_ep}) {
    CAPTURE(budget.str());
    const double plain = accuracy_after(budget);
    const double swa = accuracy_after(budget, methods::SWA{{.update_every = 1_ba}});
    const double swa_epochs = accuracy_after(budget, methods::SWA{});
    const double lookahead = accuracy_after(budget, methods::Lookahead{});
    MESSAGE(budget.str(), ": plain ", plain, ", SWA per step ", swa, ", SWA per epoch ", swa_epochs, ", Lookahead ",
            lookahead);
    CHECK(swa >= plain - 0.05);
    CHECK(swa_epochs >= plain - 0.05);
    CHECK(lookahead >= plain - 0.1);  // it takes half steps: slower, but not a trap
  }
}
