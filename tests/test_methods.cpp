// Data methods: MixUp, CutMix and CutOut on known inputs (exact expectations of what they
// do to inputs and targets), their composition with LabelSmoothing and with a non-softmax
// loss, and the Beta sampler behind them.
#include <doctest/doctest.h>

#include <fasttrain/fasttrain.hpp>

#include "fixtures.hpp"
#include <set>
#include <type_traits>
#include <vector>

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;

namespace {

// A batch of n images {C, H, W}: every value of sample j is j + 1; label j % k.
data::Batch<> constant_images(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, int k) {
  data::Batch<> b;
  b.inputs.resize(Shape(c, h, w), n);
  for (std::int64_t j = 0; j < n; ++j) b.inputs.data.col(j).setConstant(static_cast<float>(j + 1));
  for (std::int64_t j = 0; j < n; ++j) {
    b.labels.push_back(static_cast<std::int32_t>(j % k));
    b.indices.push_back(j);
  }
  return b;
}

using Tiny = nn::Sequential<nn::Linear<4, 3>>;

// Runs a method's before_forward and before_loss on `batch`, as the Trainer would; returns
// the targets the loss would see (dense).
template <class M>
B::matrix step_targets(M& m, data::Batch<>& batch, std::int64_t classes) {
  Tiny model;
  Time time;
  BatchContext<Tiny> bctx{batch, model, time};
  m.on_before_forward(bctx);
  B::tensor outputs;
  outputs.resize(Shape(classes), batch.size());
  nn::Targets<B> targets{&batch.labels, nullptr};
  float loss = 0.f;
  LossContext<Tiny> lctx{batch, outputs, targets, loss, time};
  m.on_before_loss(lctx);
  REQUIRE(targets.soft != nullptr);
  B::matrix t = *targets.soft;
  m.on_after_loss(lctx);
  CHECK(targets.soft == nullptr);  // restored
  return t;
}

}  // namespace

TEST_CASE("Rng::beta: mean and variance of Beta(a, b)") {
  Rng rng(1);
  for (auto [a, b] : {std::pair{2.0, 3.0}, std::pair{0.2, 0.2}, std::pair{1.0, 1.0}}) {
    CAPTURE(a);
    CAPTURE(b);
    double s = 0, s2 = 0;
    const int n = 40000;
    for (int i = 0; i < n; ++i) {
      const double x = rng.beta(a, b);
      REQUIRE(x >= 0.0);
      REQUIRE(x <= 1.0);
      s += x;
      s2 += x * x;
    }
    const double mean = s / n, var = s2 / n - mean * mean;
    CHECK(mean == doctest::Approx(a / (a + b)).epsilon(0.02));
    CHECK(var == doctest::Approx(a * b / ((a + b) * (a + b) * (a + b + 1))).epsilon(0.05));
  }
}

TEST_CASE("MixUp: inputs and targets are the same convex combination of a pairing of the batch") {
  methods::MixUp mix({.alpha = 1.0f, .seed = 3});
  auto batch = constant_images(6, 1, 2, 2, 3);
  const B::matrix t = step_targets(mix, batch, 3);
  const float lam = mix.last_lambda();
  const auto& perm = mix.last_permutation();
  CHECK(lam > 0.f);
  CHECK(lam < 1.f);
  CHECK(std::set<std::int64_t>(perm.begin(), perm.end()).size() == 6);  // a permutation
  for (std::int64_t j = 0; j < 6; ++j) {
    const auto p = perm[static_cast<std::size_t>(j)];
    const float expected = lam * static_cast<float>(j + 1) + (1.f - lam) * static_cast<float>(p + 1);
    CHECK((batch.inputs.data.col(j).array() - expected).abs().maxCoeff() < 1e-5f);
    B::matrix want = B::matrix::Zero(3, 1);
    want(j % 3, 0) += lam;
    want(p % 3, 0) += 1.f - lam;
    CHECK((t.col(j) - want).cwiseAbs().maxCoeff() < 1e-6f);
    CHECK(t.col(j).sum() == doctest::Approx(1.0));
  }
  // Another batch draws another lambda and pairing.
  auto again = constant_images(6, 1, 2, 2, 3);
  (void)step_targets(mix, again, 3);
  CHECK(mix.last_lambda() != lam);
  CHECK_THROWS_AS(methods::MixUp({.alpha = 0.f}), config_error);
}

TEST_CASE("CutMix: a box of the paired image, and targets mixed by its area") {
  methods::CutMix cut({.alpha = 1.0f, .seed = 5});
  int boxes_seen = 0;
  for (int round = 0; round < 20; ++round) {
    auto batch = constant_images(4, 2, 8, 6, 4);
    const B::matrix t = step_targets(cut, batch, 4);
    const auto box = cut.last_box();
    const auto& perm = cut.last_permutation();
    const float lam = cut.last_lambda();
    CHECK(lam == doctest::Approx(1.0 - static_cast<double>(box.area()) / 48.0));
    boxes_seen += box.area() > 0;
    for (std::int64_t j = 0; j < 4; ++j) {
      const auto p = perm[static_cast<std::size_t>(j)];
      for (std::int64_t y = 0; y < 8; ++y)
        for (std::int64_t x = 0; x < 6; ++x)
          for (std::int64_t c = 0; c < 2; ++c) {
            const bool in_box = y >= box.y0 && y < box.y1 && x >= box.x0 && x < box.x1;
            const float want = static_cast<float>((in_box ? p : j) + 1);
            REQUIRE(batch.inputs.data(c + 2 * (x + 6 * y), j) == want);
          }
      B::matrix want = B::matrix::Zero(4, 1);
      want(j, 0) += lam;
      want(p, 0) += 1.f - lam;
      CHECK((t.col(j) - want).cwiseAbs().maxCoeff() < 1e-6f);
    }
  }
  CHECK(boxes_seen > 10);
  auto flat = constant_images(2, 1, 2, 2, 2);
  flat.inputs.shape = Shape(4);
  Tiny model;
  Time time;
  BatchContext<Tiny> bctx{flat, model, time};
  CHECK_THROWS_AS(cut.on_before_forward(bctx), shape_error);
}

TEST_CASE("CutOut: one zeroed square per image, across all channels, inside the image") {
  methods::CutOut co({.holes = 1, .length = 0.5f, .seed = 1});
  auto batch = constant_images(50, 3, 10, 8, 2);  // side = round(0.5 * 8) = 4
  Tiny model;
  Time time;
  BatchContext<Tiny> bctx{batch, model, time};
  co.on_before_forward(bctx);
  int clipped = 0;
  for (std::int64_t j = 0; j < 50; ++j) {
    std::int64_t y0 = 10, y1 = -1, x0 = 8, x1 = -1, zeros = 0;
    for (std::int64_t y = 0; y < 10; ++y)
      for (std::int64_t x = 0; x < 8; ++x) {
        const float v0 = batch.inputs.data(3 * (x + 8 * y), j);
        for (int c = 1; c < 3; ++c) REQUIRE(batch.inputs.data(c + 3 * (x + 8 * y), j) == v0);
        if (v0 == 0.f) {
          ++zeros;
          y0 = std::min(y0, y), y1 = std::max(y1, y), x0 = std::min(x0, x), x1 = std::max(x1, x);
        } else {
          REQUIRE(v0 == static_cast<float>(j + 1));
        }
      }
    REQUIRE(zeros > 0);
    CHECK(zeros == (y1 - y0 + 1) * (x1 - x0 + 1));  // a rectangle ...
    CHECK(y1 - y0 + 1 <= 4);                        // ... of at most 4 x 4
    CHECK(x1 - x0 + 1 <= 4);
    clipped += zeros < 16;
  }
  CHECK(clipped > 0);   // some squares were clipped at the border
  CHECK(clipped < 50);  // most were not
  CHECK_THROWS_AS(methods::CutOut({.length = 1.5f}), config_error);
}

TEST_CASE("MixUp composes: before LabelSmoothing whatever the order given, and with an MSE loss") {
  using T = decltype(Trainer{std::declval<Tiny&>(), optim::SGD{}, nn::SoftmaxCrossEntropy{},
                             methods::LabelSmoothing{0.1f}, methods::MixUp{}});
  static_assert(std::is_same_v<std::tuple_element_t<0, T::methods_tuple>, methods::MixUp>,
                "MixUp must run before LabelSmoothing");

  // MixUp + MSE on three separable blobs: the loss goes down (dense targets reach MSE).
  const data::Dataset ds = fixtures::blobs(300, 1, 2.f, 0.5f);
  data::Loader loader(ds, {.batch_size = 20, .seed = 1});
  Tiny model;
  model.reset_parameters(1);
  Trainer t{model, optim::SGD{{.lr = 0.05f, .momentum = 0.9f}}, nn::MSE{}, methods::MixUp{{.alpha = 0.4f}}};
  const Result r = t.fit(loader, ds, {.max_duration = 8_ep, .progress = ProgressMode::never});
  CHECK(r.history.back().train_loss < 0.6 * r.history.front().train_loss);
  CHECK(r.test_accuracy > 0.9);
}
