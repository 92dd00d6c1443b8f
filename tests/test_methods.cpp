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
  for (const auto& ab : {std::pair{2.0, 3.0}, std::pair{0.2, 0.2}, std::pair{1.0, 1.0}}) {
    const double a = ab.first, b = ab.second;  // (not a structured binding: clang 14 cannot capture one)
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

// ---- SelectiveBackprop, DataEchoing, DataPruning, Curriculum --------------------------------

namespace {

// Tiny with W = [I3 | 0], b = 0: the logits of x are x's first three features.
Tiny identity_tiny() {
  Tiny m;
  auto& l = m.layer<0>();
  l.weight.setZero();
  for (int i = 0; i < 3; ++i) l.weight(i, i) = 1.f;
  l.bias.setZero();
  return m;
}

// Samples x_j = (a_j, 0, 0, 0) with label 0: cross-entropy log(e^a + 2) - a falls as a grows.
data::Batch<> graded_batch(const std::vector<float>& a) {
  data::Batch<> b;
  b.inputs.resize(Shape(4), static_cast<Eigen::Index>(a.size()));
  b.inputs.data.setZero();
  for (std::size_t j = 0; j < a.size(); ++j) {
    b.inputs.data(0, static_cast<Eigen::Index>(j)) = a[j];
    b.labels.push_back(0);
    b.indices.push_back(100 + static_cast<std::int64_t>(j));
  }
  return b;
}

// Records, per step, the epoch, the batch's dataset indices at before_forward and the
// training forward's batch size.
struct Recorder {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::before_forward, event::after_forward>;
  using runs_after = type_list<methods::SelectiveBackprop>;
  std::vector<std::int64_t> epoch, forward_size;
  std::vector<std::vector<std::int64_t>> indices;
  std::vector<float> first_input;
  bool bump = false;  // add 1 to every input after recording (a stand-in for an augmentation)
  template <class Ctx>
  void on_before_forward(Ctx& ctx) {
    epoch.push_back(ctx.time.epoch);
    indices.push_back(ctx.batch.indices);
    first_input.push_back(ctx.batch.inputs.data(0, 0));
    if (bump) ctx.batch.inputs.data.array() += 1.f;
  }
  template <class Ctx>
  void on_after_forward(Ctx& ctx) {
    forward_size.push_back(ctx.outputs.batch());
  }
};

auto tiny_trainer = [](Tiny& m, auto... methods) {
  return Trainer{m, optim::SGD{{.lr = 0.05f}}, nn::SoftmaxCrossEntropy{}, std::move(methods)...};
};

}  // namespace

TEST_CASE("SelectiveBackprop top_k: keeps exactly the highest-loss half, with their labels and indices") {
  const std::vector<float> a{3, -1, 2, 0, 1, -2};
  auto batch = graded_batch(a);
  const B::matrix x0 = batch.inputs.data;
  Tiny model = identity_tiny();
  Time time;
  methods::SelectiveBackprop sb({.start = 0.f, .end = 1.f, .keep = 0.5f, .interrupt = 0,
                                 .selection = methods::SelectiveBackprop::Selection::top_k});
  BatchContext<Tiny> ctx{batch, model, time};
  sb.on_before_forward(ctx);
  // Losses log(e^a + 2) - a, computed by the method from the eval forward.
  REQUIRE(sb.last_losses().size() == a.size());
  for (std::size_t j = 0; j < a.size(); ++j)
    CHECK(sb.last_losses()[j] == doctest::Approx(std::log(std::exp(a[j]) + 2.f) - a[j]).epsilon(1e-5));
  // The three largest losses: a = -1, 0, -2 at positions 1, 3, 5.
  CHECK(sb.last_selection() == std::vector<std::int64_t>{1, 3, 5});
  REQUIRE(batch.size() == 3);
  CHECK(batch.indices == std::vector<std::int64_t>{101, 103, 105});
  CHECK(batch.labels == B::labels{0, 0, 0});
  for (Eigen::Index i = 0; i < 3; ++i) CHECK(batch.inputs.data.col(i) == x0.col(1 + 2 * i));
}

TEST_CASE("SelectiveBackprop proportional: high losses are kept more often, always keep * n distinct samples") {
  const std::vector<float> a{3, -1, 2, 0, 1, -2};  // loss rank (low to high): 0, 2, 4, 3, 1, 5
  Tiny model = identity_tiny();
  Time time;
  methods::SelectiveBackprop sb({.start = 0.f, .end = 1.f, .keep = 0.5f, .interrupt = 0, .seed = 3});
  std::vector<int> kept(a.size(), 0);
  const int draws = 4000;
  for (int d = 0; d < draws; ++d) {
    auto batch = graded_batch(a);
    BatchContext<Tiny> ctx{batch, model, time};
    sb.on_before_forward(ctx);
    const auto& s = sb.last_selection();
    REQUIRE(s.size() == 3);
    CHECK(std::set<std::int64_t>(s.begin(), s.end()).size() == 3);
    for (auto j : s) ++kept[static_cast<std::size_t>(j)];
  }
  // Weights p^(1/keep - 1) = p at percentiles p = 1/12, 3/12, ..., 11/12, drawn 3 at a time
  // without replacement: the exact inclusion probabilities (enumerated over all ordered draws).
  const std::vector<double> inclusion{0.110898, 0.311914, 0.481074, 0.613617, 0.707739, 0.774758};
  const std::vector<std::size_t> by_loss{0, 2, 4, 3, 1, 5};  // positions from the lowest loss up
  for (std::size_t r = 0; r < by_loss.size(); ++r) {
    CAPTURE(r);
    CHECK(std::abs(kept[by_loss[r]] / static_cast<double>(draws) - inclusion[r]) < 0.03);  // 4000 draws: sd < 0.008
  }
}

TEST_CASE("SelectiveBackprop: active only between start and end, and off on every interrupt-th step") {
  methods::SelectiveBackprop sb({.start = 0.5f, .end = 0.9f, .interrupt = 2});
  Time t;
  t.max_duration = Duration(10, Unit::batch);
  t.batch = 4;
  CHECK_FALSE(sb.active(t));  // 0.4
  t.batch = 6;
  CHECK(sb.active(t));        // 0.6, step 7 is not a multiple of 2
  t.batch = 7;
  CHECK_FALSE(sb.active(t));  // step 8: the interrupt
  t.batch = 9;
  CHECK_FALSE(sb.active(t));  // 0.9 = end
  // Inactive: the batch is left alone.
  auto batch = graded_batch({1, 2, 3, 4});
  Tiny model = identity_tiny();
  t.batch = 1;
  BatchContext<Tiny> ctx{batch, model, t};
  sb.on_before_forward(ctx);
  CHECK(batch.size() == 4);
  CHECK_THROWS_WITH_AS(methods::SelectiveBackprop({.keep = 0.f}),
                       doctest::Contains("keep must be in (0, 1]"), config_error);
  CHECK_THROWS_WITH_AS(methods::SelectiveBackprop({.start = 0.6f, .end = 0.5f}),
                       doctest::Contains("end must be in [start, 1]"), config_error);
}

TEST_CASE("SelectiveBackprop in a Trainer: forward and backward on half of each batch, Time counts all") {
  const auto train = fixtures::blobs(96, 1);
  data::Loader loader(train, {.batch_size = 16, .seed = 1});
  Tiny m;
  m.reset_parameters(1);
  auto t = tiny_trainer(m, Recorder{}, methods::SelectiveBackprop({.start = 0.f, .end = 1.f, .interrupt = 0}));
  (void)t.fit(loader, nullptr, {.max_duration = 2_ep, .progress = ProgressMode::never});
  const auto& rec = t.method<Recorder>();
  REQUIRE(rec.forward_size.size() == 12);
  for (auto n : rec.forward_size) CHECK(n == 8);
  for (const auto& idx : rec.indices) CHECK(idx.size() == 8);  // Recorder runs after the selection
  CHECK(t.time().sample == 192);
  CHECK(t.time().epoch == 2);
}

TEST_CASE("DataEchoing: each batch trains `factor` times from its pristine inputs, and epochs still count passes") {
  const auto train = fixtures::blobs(48, 1);
  data::Loader loader(train, {.batch_size = 12, .seed = 1});
  Tiny m;
  m.reset_parameters(1);
  Recorder rec;
  rec.bump = true;
  auto t = tiny_trainer(m, methods::DataEchoing({.factor = 3}), rec);
  const Result r = t.fit(loader, nullptr, {.max_duration = 2_ep, .progress = ProgressMode::never});
  const auto& got = t.method<Recorder>();
  REQUIRE(got.indices.size() == 24);  // 2 epochs x 4 batches x 3
  CHECK(r.steps == 24);
  CHECK(t.time().epoch == 2);
  CHECK(t.time().sample == 96);
  for (std::size_t s = 0; s < 24; s += 3) {
    CHECK(got.indices[s + 1] == got.indices[s]);
    CHECK(got.indices[s + 2] == got.indices[s]);
    CHECK(got.first_input[s + 1] == got.first_input[s]);  // the bump of the previous step was undone
    CHECK(got.first_input[s + 2] == got.first_input[s]);
    if (s + 3 < 24) CHECK(got.indices[s + 3] != got.indices[s]);
  }
  CHECK_THROWS_WITH_AS(methods::DataEchoing({.factor = 0}), doctest::Contains("factor must be >= 1"), config_error);
}

namespace {
// Records each step's learning-rate multiplier as the optimizer will see it.
struct LRProbe {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::before_step>;
  using runs_after = type_list<methods::BatchSizeWarmup>;
  std::vector<float> lr;
  template <class Ctx>
  void on_before_step(Ctx& ctx) {
    lr.push_back(ctx.lr_multiplier);
  }
};

// Per epoch, the batch sizes of its steps (from Recorder's log).
std::vector<std::vector<std::int64_t>> sizes_per_epoch(const Recorder& r) {
  std::vector<std::vector<std::int64_t>> out;
  for (std::size_t s = 0; s < r.epoch.size(); ++s) {
    if (out.size() <= static_cast<std::size_t>(r.epoch[s])) out.resize(static_cast<std::size_t>(r.epoch[s]) + 1);
    out[static_cast<std::size_t>(r.epoch[s])].push_back(r.forward_size[s]);
  }
  return out;
}
}  // namespace

TEST_CASE("BatchSizeWarmup: small batches first, grown to the loader's by the end of warmup; each epoch one pass") {
  using BSW = methods::BatchSizeWarmup;
  const auto train = fixtures::blobs(40, 1);
  // B = 16, initial 0.25, multiple 4, warmup 2 epochs: epoch 0 at t = 0 gives 4; epoch 1 at
  // t = 0.5 gives 16 * 0.625 = 10, rounded to 12 (2.5 fours, half away from zero); then 16.
  for (const auto scaling : {BSW::LRScaling::none, BSW::LRScaling::linear, BSW::LRScaling::sqrt}) {
    CAPTURE(static_cast<int>(scaling));
    data::Loader loader(train, {.batch_size = 16, .seed = 3});
    Tiny m;
    m.reset_parameters(1);
    auto t = tiny_trainer(m, BSW({.initial = 0.25f, .warmup = 2_ep, .multiple = 4, .lr_scaling = scaling}),
                          Recorder{}, LRProbe{});
    const Result r = t.fit(loader, nullptr, {.max_duration = 4_ep, .progress = ProgressMode::never});
    const auto& rec = t.method<Recorder>();
    const auto sizes = sizes_per_epoch(rec);
    REQUIRE(sizes.size() == 4);
    CHECK(sizes[0] == std::vector<std::int64_t>(10, 4));
    CHECK(sizes[1] == std::vector<std::int64_t>{12, 12, 12, 4});
    CHECK(sizes[2] == std::vector<std::int64_t>{16, 16, 8});
    CHECK(sizes[3] == std::vector<std::int64_t>{16, 16, 8});
    CHECK(r.steps == 20);
    CHECK(r.epochs == 4);
    CHECK(t.time().sample == 160);
    // Each epoch is one pass, in the loader's own order for that epoch.
    data::Loader plain(train, {.batch_size = 16, .seed = 3, .prefetch = 0});
    std::size_t s = 0;
    for (std::int64_t e = 0; e < 4; ++e) {
      plain.start_epoch(e);
      std::vector<std::int64_t> want, got;
      data::Batch<> b;
      while (plain.next(b)) want.insert(want.end(), b.indices.begin(), b.indices.end());
      for (std::size_t k = 0; k < sizes[static_cast<std::size_t>(e)].size(); ++k, ++s)
        got.insert(got.end(), rec.indices[s].begin(), rec.indices[s].end());
      CHECK(got == want);
    }
    // The learning rate follows lr_scaling, per step, from each epoch's batch size.
    const auto& lr = t.method<LRProbe>().lr;
    REQUIRE(lr.size() == 20);
    auto factor = [&](double b) {
      return scaling == BSW::LRScaling::linear ? b / 16 : scaling == BSW::LRScaling::sqrt ? std::sqrt(b / 16) : 1.0;
    };
    for (std::size_t k = 0; k < 20; ++k) {
      const double b = k < 10 ? 4 : k < 14 ? 12 : 16;
      CHECK(lr[k] == doctest::Approx(factor(b)));
    }
  }
  // Without the method the run is the loader's: 3 batches per epoch.
  data::Loader loader(train, {.batch_size = 16, .seed = 3});
  Tiny m;
  auto t = tiny_trainer(m, Recorder{});
  CHECK(t.fit(loader, nullptr, {.max_duration = 4_ep, .progress = ProgressMode::never}).steps == 12);

  CHECK(BSW({.initial = 0.1f, .multiple = 8}).batch_size_at(0.0, 128) == 16);   // 12.8 -> 16
  CHECK(BSW({.initial = 0.01f, .multiple = 8}).batch_size_at(0.0, 128) == 8);   // never below `multiple`
  CHECK(BSW({.initial = 0.01f, .multiple = 8}).batch_size_at(0.0, 5) == 5);     // nor above B
  CHECK(BSW({.initial = 0.5f, .multiple = 1}).batch_size_at(2.0, 100) == 100);  // t is clamped to 1
  CHECK_THROWS_WITH_AS(BSW({.initial = 0.f}), doctest::Contains("initial must be in (0, 1]"), config_error);
  CHECK_THROWS_WITH_AS(BSW({.warmup = 10_ba}), doctest::Contains("warmup must be in ep, sp or dur"), config_error);
  CHECK_THROWS_WITH_AS(BSW({.warmup = 1.5_dur}), doctest::Contains("must be <= 1"), config_error);
  CHECK_THROWS_WITH_AS(BSW({.multiple = 0}), doctest::Contains("multiple must be >= 1"), config_error);
}

TEST_CASE("el2n_scores and ForgettingCounter: exact values") {
  data::Dataset ds;
  ds.sample_shape = Shape(4);
  ds.num_classes = 3;
  ds.features = B::matrix::Zero(4, 2);
  ds.features(0, 0) = 2.f;  // logits (2, 0, 0), label 0
  ds.labels = {0, 2};       // sample 1: logits (0, 0, 0), label 2
  Tiny model = identity_tiny();
  const auto s = methods::el2n_scores(model, ds, 1);
  const float e = std::exp(2.f), z = e + 2.f;
  CHECK(s[0] == doctest::Approx(std::sqrt((1 - e / z) * (1 - e / z) + 2 / (z * z))));
  CHECK(s[1] == doctest::Approx(std::sqrt(2.f / 9 + 4.f / 9)));

  methods::ForgettingCounter f;
  f.resize(3);
  B::matrix right(3, 3), wrong(3, 3);
  right << 1, 0, 0, 0, 1, 0, 0, 0, 1;  // argmax = row: labels 0, 1, 2 are right
  wrong << 0, 1, 1, 1, 0, 0, 0, 0, 0;  // argmax: 1, 0, 0
  const B::labels y{0, 1, 2};
  const std::vector<std::int64_t> idx{0, 1, 2};
  // Sample 0: right, wrong, right, wrong -> 2 events. Sample 1 only in `wrong` columns: never
  // learned. Sample 2 is right in `right` and wrong in `wrong`.
  f.observe(right, y, {0});
  f.observe(wrong, y, {0, 1});
  f.observe(right, y, {0});
  f.observe(wrong, y, {0, 1, 2});
  const auto sc = f.scores();
  CHECK(sc[0] == 2.f);
  CHECK(std::isinf(sc[1]));
  CHECK(std::isinf(sc[2]));  // seen once, wrong
  f.observe(right, y, idx);
  f.observe(right, y, idx);
  CHECK(f.scores()[2] == 0.f);
  CHECK(f.scores()[0] == 2.f);
}

TEST_CASE("DataPruning: from score_epoch on, each epoch is exactly the hardest (1 - fraction), reshuffled") {
  const auto train = fixtures::blobs(60, 1, 1.f, 1.f);  // overlapping blobs: scores differ
  data::Loader loader(train, {.batch_size = 8, .seed = 1});
  Tiny m;
  m.reset_parameters(1);
  auto t = tiny_trainer(m, methods::DataPruning({.fraction = 0.5f, .score_epoch = 1}), Recorder{});
  const Result r = t.fit(loader, nullptr, {.max_duration = 3_ep, .progress = ProgressMode::never});
  const auto& p = t.method<methods::DataPruning>();
  const auto& rec = t.method<Recorder>();
  REQUIRE(p.kept().size() == 30);
  // The kept examples are those with the 30 highest scores.
  std::vector<float> sorted = p.scores();
  std::sort(sorted.begin(), sorted.end());
  for (auto i : p.kept()) CHECK(p.scores()[static_cast<std::size_t>(i)] >= sorted[30]);
  std::vector<std::vector<std::int64_t>> per_epoch(3);
  for (std::size_t s = 0; s < rec.indices.size(); ++s)
    for (auto i : rec.indices[s]) per_epoch[static_cast<std::size_t>(rec.epoch[s])].push_back(i);
  CHECK(per_epoch[0].size() == 60);
  for (int e = 1; e < 3; ++e) {
    auto v = per_epoch[static_cast<std::size_t>(e)];
    CHECK(v.size() == 30);
    std::sort(v.begin(), v.end());
    CHECK(v == p.kept());
  }
  CHECK(per_epoch[1] != per_epoch[2]);  // a new shuffle each epoch
  CHECK(r.steps == 8 + 4 + 4);          // ceil(60/8) + 2 x ceil(30/8)
  CHECK(t.time().sample == 120);
  CHECK_THROWS_WITH_AS(methods::DataPruning({.fraction = 1.f}), doctest::Contains("fraction must be in [0, 1)"),
                       config_error);
  CHECK_THROWS_WITH_AS(methods::DataPruning({.score = methods::ExampleScore::forgetting, .score_epoch = 0}),
                       doctest::Contains("forgetting counts need score_epoch >= 1"), config_error);
}

TEST_CASE("DataPruning with forgetting counts keeps the examples never learned") {
  const auto train = fixtures::blobs(60, 1, 1.f, 1.f);
  data::Loader loader(train, {.batch_size = 8, .seed = 1});
  Tiny m;
  m.reset_parameters(1);
  auto t = tiny_trainer(m, methods::DataPruning({.fraction = 0.5f, .score = methods::ExampleScore::forgetting,
                                                 .score_epoch = 2}));
  (void)t.fit(loader, nullptr, {.max_duration = 3_ep, .progress = ProgressMode::never});
  const auto& p = t.method<methods::DataPruning>();
  REQUIRE(p.kept().size() == 30);
  std::vector<float> sorted = p.scores();
  std::sort(sorted.begin(), sorted.end());
  for (auto i : p.kept()) CHECK(p.scores()[static_cast<std::size_t>(i)] >= sorted[30]);
  // Every example that was never classified correctly in epochs 0-1 is kept, when they fit.
  const auto never = std::count_if(p.scores().begin(), p.scores().end(), [](float s) { return std::isinf(s); });
  CHECK(never > 0);
  if (never <= 30)
    for (std::size_t i = 0; i < p.scores().size(); ++i)
      if (std::isinf(p.scores()[i]))
        CHECK(std::binary_search(p.kept().begin(), p.kept().end(), static_cast<std::int64_t>(i)));
}

TEST_CASE("Curriculum: pacing functions, and batches drawn only from the easiest g(t) examples") {
  methods::Curriculum lin({.start = 0.2f, .full_at = 0.5f});
  CHECK(lin.available(0.0, 0.0) == doctest::Approx(0.2));
  CHECK(lin.available(0.25, 0.0) == doctest::Approx(0.6));
  CHECK(lin.available(0.5, 0.0) == 1.0);
  CHECK(lin.available(0.3, 0.1) == doctest::Approx(0.2 + 0.8 * 0.5));
  methods::Curriculum quad({.pacing = methods::Pacing::quadratic, .start = 0.2f, .full_at = 0.5f});
  CHECK(quad.available(0.25, 0.0) == doctest::Approx(0.4));
  methods::Curriculum root({.pacing = methods::Pacing::root, .start = 0.2f, .full_at = 0.5f});
  CHECK(root.available(0.25, 0.0) == doctest::Approx(0.2 + 0.8 * std::sqrt(0.5)));
  methods::Curriculum step({.pacing = methods::Pacing::step, .start = 0.2f, .full_at = 0.5f});
  CHECK(step.available(0.3, 0.0) == doctest::Approx(0.6));  // x = 0.6: floor(2.4) / 4

  // Scores = the index: example i is the i-th easiest.
  const auto train = fixtures::blobs(60, 1);
  std::vector<float> scores(60);
  for (int i = 0; i < 60; ++i) scores[static_cast<std::size_t>(i)] = static_cast<float>(i);
  data::Loader loader(train, {.batch_size = 10, .seed = 1});
  Tiny m;
  m.reset_parameters(1);
  auto t = tiny_trainer(m, methods::Curriculum({.start = 0.2f, .full_at = 0.5f, .scores = scores}), Recorder{});
  (void)t.fit(loader, nullptr, {.max_duration = 2_ep, .progress = ProgressMode::never});
  const auto& rec = t.method<Recorder>();
  REQUIRE(rec.indices.size() == 12);
  for (std::size_t b = 0; b < 6; ++b) {  // epoch 0: budget fraction b / 12
    const double g = 0.2 + 0.8 * (static_cast<double>(b) / 12.0) / 0.5;
    const auto avail = static_cast<std::int64_t>(std::ceil(g * 60));
    CAPTURE(b);
    CHECK(std::set<std::int64_t>(rec.indices[b].begin(), rec.indices[b].end()).size() == 10);  // no repeats in a batch
    for (auto i : rec.indices[b]) CHECK(i < avail);
  }
  CHECK(*std::max_element(rec.indices[0].begin(), rec.indices[0].end()) < 12);
  std::set<std::int64_t> second;  // epoch 1 starts at full_at: an ordinary pass
  for (std::size_t b = 6; b < 12; ++b) second.insert(rec.indices[b].begin(), rec.indices[b].end());
  CHECK(second.size() == 60);
  CHECK_THROWS_WITH_AS(methods::Curriculum({.start = 0.f}), doctest::Contains("start must be in (0, 1]"), config_error);
  auto bad = tiny_trainer(m, methods::Curriculum({.scores = {1.f, 2.f}}));
  CHECK_THROWS_WITH_AS((void)bad.fit(loader, nullptr, {.max_duration = 1_ep, .progress = ProgressMode::never}),
                       doctest::Contains("scores has 2 entries but the training set (blobs) has 60"), config_error);
}

TEST_CASE("DataControl: the order is set only at epoch_begin, only for a source that can draw it") {
  std::vector<std::int64_t> order;
  bool repeat = false;
  const auto ds = fixtures::blobs(6, 1);
  DataControl dc(&ds, 2, true, &order, &repeat);
  CHECK_THROWS_AS(dc.set_epoch_order({0, 1}), std::logic_error);
  CHECK_THROWS_AS(dc.repeat_batch(), std::logic_error);
  dc.set_phase(DataControl::Phase::epoch_begin);
  CHECK_THROWS_WITH_AS(dc.set_epoch_order({0, 6}), doctest::Contains("entry 1 is 6, not a sample of the training set [0, 6)"),
                       config_error);
  dc.set_epoch_order({5, 4});
  CHECK(order == std::vector<std::int64_t>{5, 4});
  DataControl none(nullptr, 0, false, &order, &repeat);
  none.set_phase(DataControl::Phase::epoch_begin);
  CHECK_THROWS_WITH_AS(none.set_epoch_order({0}), doctest::Contains("cannot draw a given order"), config_error);
  CHECK_THROWS_WITH_AS(none.set_epoch_batch_size(4), doctest::Contains("cannot (use data::Loader"), config_error);
  std::int64_t bs = 0;
  DataControl resizable(&ds, 2, true, &order, &repeat, &bs);
  CHECK_THROWS_AS(resizable.set_epoch_batch_size(4), std::logic_error);  // not at epoch_begin
  resizable.set_phase(DataControl::Phase::epoch_begin);
  CHECK_THROWS_WITH_AS(resizable.set_epoch_batch_size(0), doctest::Contains("must be >= 1, got 0"), config_error);
  resizable.set_epoch_batch_size(4);
  CHECK(bs == 4);
  CHECK(resizable.can_resize());
  CHECK_FALSE(none.can_resize());
}
