// Image-size and augmentation methods on known inputs: nn::AdaptiveAvgPool2d (exact values and
// gradients), methods::ProgressiveResizing (its schedule, its resampling, its identity at full
// size, and a Trainer run whose forward passes ran at the reduced size) and
// methods::RandAugment (each operation's exact effect, determinism, option checks).
#include <doctest/doctest.h>

#include "gradcheck.hpp"

#include <cmath>
#include <fasttrain/data/dataset.hpp>
#include <fasttrain/data/loader.hpp>
#include <fasttrain/io/archive.hpp>
#include <fasttrain/methods/data/cutout.hpp>
#include <fasttrain/methods/data/progressive_resizing.hpp>
#include <fasttrain/methods/data/rand_augment.hpp>
#include <fasttrain/nn/nn.hpp>
#include <fasttrain/optim/sgd.hpp>
#include <fasttrain/train/train.hpp>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;
using Mat = B::matrix;
using Tensor = B::tensor;
using gradcheck::random_image;

namespace {

// Offset of (ch, y, x) in a C x H x W sample (channels fastest).
std::int64_t off(const Shape& s, std::int64_t ch, std::int64_t y, std::int64_t x) { return ch + s[0] * (x + s[2] * y); }

// A batch of n images whose value at (c, y, x) of sample j is f(j, c, y, x).
template <class F>
data::Batch<> images(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, F&& f) {
  data::Batch<> b;
  b.inputs.resize(Shape(c, h, w), n);
  for (std::int64_t j = 0; j < n; ++j) {
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t y = 0; y < h; ++y)
        for (std::int64_t x = 0; x < w; ++x) b.inputs.data(off(b.inputs.shape, ch, y, x), j) = f(j, ch, y, x);
    b.labels.push_back(static_cast<std::int32_t>(j % 2));
    b.indices.push_back(j);
  }
  return b;
}

using Tiny = nn::Sequential<nn::Linear<4, 3>>;

// Time at step `step` of a budget of `total` steps (fraction = step / total).
Time at_step(std::int64_t step, std::int64_t total) {
  Time t;
  t.batches_per_epoch = total;
  t.max_duration = Duration{static_cast<double>(total), Unit::batch};
  t.batch = step;
  return t;
}

// Runs m.on_before_forward on `batch` at `time`, as the Trainer would.
template <class M>
void before_forward(M& m, data::Batch<>& batch, const Time& time = Time{}) {
  Tiny model;
  BatchContext<Tiny> ctx{batch, model, time};
  m.on_before_forward(ctx);
}
template <class M>
void batch_end(M& m, data::Batch<>& batch, const Time& time = Time{}) {
  Tiny model;
  BatchContext<Tiny> ctx{batch, model, time};
  m.on_batch_end(ctx);
}

}  // namespace

// ---- nn::AdaptiveAvgPool2d ---------------------------------------------------------------

TEST_CASE("AdaptiveAvgPool2d: output shape, errors, and the identity at the output size") {
  nn::AdaptiveAvgPool2d<7, 7> pool;
  CHECK(pool.output_shape(Shape(3, 28, 20)) == Shape(3, 7, 7));
  CHECK(pool.output_shape(Shape(2, 3, 3)) == Shape(2, 7, 7));
  CHECK_THROWS_WITH_AS(pool.output_shape(Shape(49)), doctest::Contains("AdaptiveAvgPool2d<7,7>"), shape_error);
  CHECK_THROWS_AS(pool.output_shape(Shape(7, 7)), shape_error);

  const Tensor x = random_image(3, 7, 7, 4, 1);
  Tensor y;
  pool.forward(x, y, nn::Mode::train);
  CHECK(y.shape == x.shape);
  CHECK(y.data == x.data);  // exactly
  const Tensor dy = random_image(3, 7, 7, 4, 2);
  Tensor dx;
  pool.backward(x, y, dy, &dx);
  CHECK(dx.shape == x.shape);
  CHECK(dx.data == dy.data);
}

TEST_CASE("AdaptiveAvgPool2d: 4x4 -> 2x2 is AvgPool2d<2>, forward and backward") {
  const Tensor x = random_image(3, 4, 4, 5, 3);
  nn::AdaptiveAvgPool2d<2, 2> ada;
  nn::AvgPool2d<2> avg;
  Tensor ya, yb;
  ada.forward(x, ya, nn::Mode::train);
  avg.forward(x, yb, nn::Mode::train);
  CHECK(ya.shape == Shape(3, 2, 2));
  CHECK(ya.shape == yb.shape);
  CHECK((ya.data - yb.data).cwiseAbs().maxCoeff() <= 1e-6f);
  const Tensor dy = random_image(3, 2, 2, 5, 4);
  Tensor da, db;
  ada.backward(x, ya, dy, &da);
  avg.backward(x, yb, dy, &db);
  CHECK((da.data - db.data).cwiseAbs().maxCoeff() <= 1e-6f);
}

TEST_CASE("AdaptiveAvgPool2d: 3x3 -> 7x7 repeats and overlaps rows by PyTorch's bin rule") {
  // Bins of 3 -> 7: [0,1) [0,1) [0,2) [1,2) [1,3) [2,3) [2,3); their mean index:
  const float mean_index[7] = {0.f, 0.f, 0.5f, 1.f, 1.5f, 2.f, 2.f};
  Tensor x;
  x.resize(Shape(2, 3, 3), 1);
  for (std::int64_t y = 0; y < 3; ++y)
    for (std::int64_t xx = 0; xx < 3; ++xx) {
      x.data(off(x.shape, 0, y, xx), 0) = static_cast<float>(10 * y + xx);
      x.data(off(x.shape, 1, y, xx), 0) = -1.f;
    }
  nn::AdaptiveAvgPool2d<7, 7> pool;
  Tensor out;
  pool.forward(x, out, nn::Mode::eval);
  REQUIRE(out.shape == Shape(2, 7, 7));
  for (std::int64_t oy = 0; oy < 7; ++oy)
    for (std::int64_t ox = 0; ox < 7; ++ox) {
      CAPTURE(oy);
      CAPTURE(ox);
      CHECK(out.data(off(out.shape, 0, oy, ox), 0) == 10.f * mean_index[oy] + mean_index[ox]);
      CHECK(out.data(off(out.shape, 1, oy, ox), 0) == -1.f);
    }
}

TEST_CASE("AdaptiveAvgPool2d: gradients match finite differences") {
  SUBCASE("downsampling with overlapping bins, 5x7 -> 3x3") {
    nn::AdaptiveAvgPool2d<3, 3> pool;
    gradcheck::check_layer(pool, random_image(2, 5, 7, 3, 5), 1e-3);
  }
  SUBCASE("mixed: 5x7 -> 2x9 (rows pooled, columns repeated)") {
    nn::AdaptiveAvgPool2d<2, 9> pool;
    gradcheck::check_layer(pool, random_image(3, 5, 7, 2, 6), 1e-3);
  }
}

TEST_CASE("AdaptiveAvgPool2d: a CNN with it takes any input size, and its Linear layer fits") {
  using Net = nn::Sequential<nn::Conv2d<1, 2, 3, 1, 1>, nn::ReLU, nn::AdaptiveAvgPool2d<2, 2>, nn::Linear<8, 3>>;
  Net net;
  for (std::int64_t side : {4, 6, 8, 13}) {
    CAPTURE(side);
    CHECK(net.output_shape(Shape(1, side, side)) == Shape(3));
    const Tensor x = random_image(1, side, side, 2, 7);
    const auto& y = net.forward(x, nn::Mode::eval);
    CHECK(y.data.rows() == 3);
    CHECK(y.data.allFinite());
  }
}

// ---- methods::ProgressiveResizing --------------------------------------------------------

TEST_CASE("ProgressiveResizing: the schedule is Composer's (delay, linear ramp, finetune, rounded sizes)") {
  const methods::ProgressiveResizing pr;  // 0.5, delay 0.5, finetune 0.2, increment 4
  // 28 * 0.5 / 4 = 3.5 rounds (half to even) to 4: 16 pixels until half of the budget.
  CHECK(pr.size_at(0.0, 28) == 16);
  CHECK(pr.size_at(0.3, 28) == 16);
  CHECK(pr.size_at(0.5, 28) == 16);
  CHECK(pr.scale_at(0.6) == doctest::Approx(0.5 + 0.5 / 3));
  CHECK(pr.size_at(0.6, 28) == 20);   // 28 * 0.667 / 4 = 4.67 -> 5
  CHECK(pr.size_at(0.65, 28) == 20);  // 28 * 0.75 / 4 = 5.25 -> 5
  CHECK(pr.size_at(0.7, 28) == 24);   // 28 * 0.833 / 4 = 5.83 -> 6
  CHECK(pr.size_at(0.8, 28) == 28);
  CHECK(pr.size_at(0.9, 28) == 28);
  CHECK(pr.size_at(1.0, 28) == 28);
  CHECK(pr.scale_at(0.8) == 1.0);
  CHECK(pr.shape_at(0.0, Shape(3, 28, 20)) == Shape(3, 16, 8));  // 20 * 0.5 / 4 = 2.5 -> 2 (to even)
  CHECK_THROWS_AS((void)pr.shape_at(0.0, Shape(784)), shape_error);

  // Rounding half to even, as Python's round(): 20 * 0.5 / 4 = 2.5 -> 2 -> 8 (not 12).
  CHECK(pr.size_at(0.0, 20) == 8);
  // Never below one increment, never above the full size.
  const methods::ProgressiveResizing tiny({.initial_scale = 0.05});
  CHECK(tiny.size_at(0.0, 28) == 4);
  CHECK(tiny.size_at(0.0, 3) == 3);
  // delay + finetune = 1: a jump to full size at the delay.
  const methods::ProgressiveResizing jump({.initial_scale = 0.5, .delay_fraction = 0.6, .finetune_fraction = 0.4});
  CHECK(jump.size_at(0.59, 28) == 16);
  CHECK(jump.size_at(0.6, 28) == 28);
  // No delay, no finetune: linear over the whole budget.
  const methods::ProgressiveResizing linear(
      {.initial_scale = 0.25, .delay_fraction = 0.0, .finetune_fraction = 0.0, .size_increment = 1});
  CHECK(linear.size_at(0.0, 100) == 25);
  CHECK(linear.size_at(0.5, 100) == 62);  // 62.5 -> 62 (to even)
  CHECK(linear.size_at(0.6, 100) == 70);
  CHECK(linear.size_at(1.0, 100) == 100);
}

TEST_CASE("ProgressiveResizing: bad options throw config_error naming the option") {
  using O = methods::ProgressiveResizingOptions;
  auto throws_naming = [](O o, const char* field) {
    CAPTURE(field);
    CHECK_THROWS_WITH_AS(methods::ProgressiveResizing{o}, doctest::Contains(field), config_error);
  };
  throws_naming({.initial_scale = 0.0}, "initial_scale");
  throws_naming({.initial_scale = 1.5}, "initial_scale");
  throws_naming({.delay_fraction = -0.1}, "delay_fraction");
  throws_naming({.finetune_fraction = 1.1}, "finetune_fraction");
  throws_naming({.delay_fraction = 0.7, .finetune_fraction = 0.4}, "delay_fraction + finetune_fraction");
  throws_naming({.size_increment = 0}, "size_increment");
  throws_naming({.mode = static_cast<methods::ResizeMode>(7)}, "mode");
  CHECK_NOTHROW(methods::ProgressiveResizing({.initial_scale = 1.0, .delay_fraction = 1.0, .finetune_fraction = 0.0}));

  methods::ProgressiveResizing pr;
  auto flat = images(2, 1, 4, 4, [](auto, auto, auto, auto) { return 1.f; });
  flat.inputs.shape = Shape(16);
  CHECK_THROWS_WITH_AS(before_forward(pr, flat), doctest::Contains("ProgressiveResizing"), shape_error);
}

TEST_CASE("ProgressiveResizing: area and bilinear halving average 2x2 blocks exactly, like AvgPool2d<2>") {
  for (auto mode : {methods::ResizeMode::area, methods::ResizeMode::bilinear}) {
    CAPTURE(methods::resize_mode_name(mode));
    methods::ProgressiveResizing pr({.initial_scale = 0.5, .size_increment = 2, .mode = mode});
    // Small integers: every partial sum is exact in float.
    auto batch = images(3, 2, 4, 4, [](auto j, auto c, auto y, auto x) {
      return static_cast<float>(((j * 7 + c * 5 + y * 4 + x) * 13) % 17);
    });
    const data::Batch<> original = batch;
    before_forward(pr, batch);  // fraction 0: 4 * 0.5 = 2
    REQUIRE(batch.inputs.shape == Shape(2, 2, 2));
    REQUIRE(batch.inputs.data.rows() == 8);
    REQUIRE(batch.inputs.data.cols() == 3);
    const auto& s = original.inputs.shape;
    for (std::int64_t j = 0; j < 3; ++j)
      for (std::int64_t c = 0; c < 2; ++c)
        for (std::int64_t oy = 0; oy < 2; ++oy)
          for (std::int64_t ox = 0; ox < 2; ++ox) {
            const auto& in = original.inputs.data;
            const float mean = (in(off(s, c, 2 * oy, 2 * ox), j) + in(off(s, c, 2 * oy, 2 * ox + 1), j) +
                                in(off(s, c, 2 * oy + 1, 2 * ox), j) + in(off(s, c, 2 * oy + 1, 2 * ox + 1), j)) /
                               4.f;
            CHECK(batch.inputs.data(off(batch.inputs.shape, c, oy, ox), j) == mean);
          }
    nn::AvgPool2d<2> avg;
    Tensor pooled;
    avg.forward(original.inputs, pooled, nn::Mode::eval);
    CHECK(pooled.data == batch.inputs.data);
  }
}

TEST_CASE("ProgressiveResizing: a constant image stays constant; bilinear reproduces a ramp") {
  for (auto mode : {methods::ResizeMode::area, methods::ResizeMode::bilinear, methods::ResizeMode::crop}) {
    CAPTURE(methods::resize_mode_name(mode));
    methods::ProgressiveResizing pr({.mode = mode});
    auto batch = images(4, 3, 28, 28, [](auto j, auto c, auto, auto) { return static_cast<float>(c + 1) - 0.3f * j; });
    before_forward(pr, batch);
    REQUIRE(batch.inputs.shape == Shape(3, 16, 16));
    for (std::int64_t j = 0; j < 4; ++j)
      for (std::int64_t p = 0; p < 16 * 16; ++p)
        for (std::int64_t c = 0; c < 3; ++c)
          REQUIRE(batch.inputs.data(c + 3 * p, j) == doctest::Approx(static_cast<float>(c + 1) - 0.3f * j).epsilon(1e-6));
  }
  // Bilinear at the output pixel centres: 28 -> 16 samples a ramp v = x at (ox + 0.5) * 1.75 - 0.5.
  methods::ProgressiveResizing pr({.mode = methods::ResizeMode::bilinear});
  auto ramp = images(1, 1, 28, 28, [](auto, auto, auto, auto x) { return static_cast<float>(x); });
  before_forward(pr, ramp);
  REQUIRE(ramp.inputs.shape == Shape(1, 16, 16));
  for (std::int64_t oy = 0; oy < 16; ++oy)
    for (std::int64_t ox = 0; ox < 16; ++ox)
      CHECK(ramp.inputs.data(ox + 16 * oy, 0) == doctest::Approx((ox + 0.5) * 1.75 - 0.5).epsilon(1e-6));
  // Area: each output of 28 -> 16 (1.75 input pixels) is the exact area-weighted mean; the first
  // covers pixel 0 fully and 0.75 of pixel 1.
  methods::ProgressiveResizing area;
  auto ramp2 = images(1, 1, 28, 28, [](auto, auto, auto, auto x) { return static_cast<float>(x); });
  before_forward(area, ramp2);
  CHECK(ramp2.inputs.data(0, 0) == doctest::Approx((0.0 * 1.0 + 1.0 * 0.75) / 1.75));
  CHECK(ramp2.inputs.data(1, 0) == doctest::Approx((1.0 * 0.25 + 2.0 * 1.0 + 3.0 * 0.5) / 1.75));
}

TEST_CASE("ProgressiveResizing: crop takes a random window of each image, reproducibly") {
  auto make = [] {
    return images(40, 1, 8, 8, [](auto j, auto, auto y, auto x) { return static_cast<float>(1000 * j + 8 * y + x); });
  };
  methods::ProgressiveResizing pr({.mode = methods::ResizeMode::crop, .seed = 5});
  auto batch = make();
  before_forward(pr, batch);  // 8 * 0.5 = 4
  REQUIRE(batch.inputs.shape == Shape(1, 4, 4));
  std::set<std::int64_t> corners;
  for (std::int64_t j = 0; j < 40; ++j) {
    const auto corner = static_cast<std::int64_t>(batch.inputs.data(0, j)) - 1000 * j;
    const std::int64_t top = corner / 8, left = corner % 8;
    REQUIRE(top >= 0);
    REQUIRE(top <= 4);
    REQUIRE(left <= 4);
    corners.insert(corner);
    for (std::int64_t y = 0; y < 4; ++y)
      for (std::int64_t x = 0; x < 4; ++x)
        REQUIRE(batch.inputs.data(x + 4 * y, j) == static_cast<float>(1000 * j + 8 * (top + y) + left + x));
  }
  CHECK(corners.size() > 10);  // 25 possible windows; the images do not share one
  methods::ProgressiveResizing again({.mode = methods::ResizeMode::crop, .seed = 5});
  auto batch2 = make();
  before_forward(again, batch2);
  CHECK(batch2.inputs.data == batch.inputs.data);
}

TEST_CASE("ProgressiveResizing: at full size the batch is not touched; batch_end restores the full batch") {
  methods::ProgressiveResizing pr;
  auto batch = images(3, 1, 28, 28, [](auto j, auto, auto y, auto x) { return static_cast<float>(j + y - x); });
  const Mat original = batch.inputs.data;
  const float* storage = batch.inputs.data.data();
  before_forward(pr, batch, at_step(8, 10));  // fraction 0.8: full size
  CHECK(pr.last_shape() == Shape(1, 28, 28));
  CHECK(batch.inputs.data.data() == storage);  // no copy
  CHECK(batch.inputs.shape == Shape(1, 28, 28));
  CHECK(batch.inputs.data == original);
  batch_end(pr, batch);
  CHECK(batch.inputs.data.data() == storage);

  methods::ProgressiveResizing never({.initial_scale = 1.0});
  before_forward(never, batch);
  CHECK(batch.inputs.data.data() == storage);

  // Reduced: the inputs are new storage; batch_end swaps the untouched full batch back.
  before_forward(pr, batch, at_step(0, 10));
  CHECK(batch.inputs.shape == Shape(1, 16, 16));
  CHECK(batch.inputs.data.rows() == 256);
  CHECK(batch.inputs.data.data() != storage);
  batch_end(pr, batch);
  CHECK(batch.inputs.shape == Shape(1, 28, 28));
  CHECK(batch.inputs.data.data() == storage);
  CHECK(batch.inputs.data == original);
  // The next batch reuses both buffers: no allocation in steady state.
  const float* small = nullptr;
  for (int round = 0; round < 3; ++round) {
    before_forward(pr, batch, at_step(1, 10));
    if (round == 0) small = batch.inputs.data.data();
    CHECK(batch.inputs.data.data() == small);
    batch_end(pr, batch);
    CHECK(batch.inputs.data.data() == storage);
  }
}

namespace {
// Records the input shape each forward pass saw, and the batch's shape at batch_end.
struct ShapeSpy {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::after_forward, event::batch_end>;
  using runs_after = type_list<methods::ProgressiveResizing>;
  std::vector<Shape>* forward;
  std::vector<Shape>* end;
  template <class Ctx>
  void on_after_forward(Ctx& ctx) {
    forward->push_back(ctx.batch.inputs.shape);
    CHECK(ctx.outputs.data.cols() == ctx.batch.inputs.data.cols());
  }
  template <class Ctx>
  void on_batch_end(Ctx& ctx) { end->push_back(ctx.batch.inputs.shape); }
};

data::Dataset image_blobs(std::int64_t n, std::int64_t side, std::uint64_t seed) {
  data::Dataset ds;
  ds.features.resize(side * side, n);
  ds.labels.resize(static_cast<std::size_t>(n));
  ds.sample_shape = Shape(1, side, side);
  ds.num_classes = 2;
  ds.name = "image_blobs";
  Rng rng(seed);
  for (std::int64_t j = 0; j < n; ++j) {
    const auto c = static_cast<std::int32_t>(j % 2);
    ds.labels[static_cast<std::size_t>(j)] = c;
    for (std::int64_t p = 0; p < side * side; ++p) ds.features(p, j) = rng.normal(c ? 1.f : -1.f, 0.5f);
  }
  return ds;
}
}  // namespace

TEST_CASE("ProgressiveResizing in a Trainer: the forward passes run at the scheduled sizes") {
  using Net = nn::Sequential<nn::Conv2d<1, 4, 3, 1, 1>, nn::ReLU, nn::AdaptiveAvgPool2d<2, 2>, nn::Linear<16, 2>>;
  const data::Dataset train = image_blobs(80, 8, 1), test = image_blobs(40, 8, 2);
  for (int prefetch : {0, 2}) {
    CAPTURE(prefetch);
    data::Loader loader(train, {.batch_size = 8, .seed = 1, .prefetch = prefetch});
    Net net;
    net.reset_parameters(1);
    std::vector<Shape> forward, end;
    Trainer trainer{net, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, ShapeSpy{&forward, &end},
                    methods::ProgressiveResizing{{.size_increment = 2}}};
    FitOptions opt;
    opt.max_duration = 10_ba;
    opt.progress = ProgressMode::never;
    const Result r = trainer.fit(loader, test, opt);
    // 8 * scale / 2 rounded, times 2: 4 until 0.5 of the budget, then 6, 6, and 8 from 0.8.
    const std::vector<std::int64_t> sides{4, 4, 4, 4, 4, 4, 6, 6, 8, 8};
    REQUIRE(forward.size() == sides.size());
    for (std::size_t k = 0; k < sides.size(); ++k) {
      CAPTURE(k);
      CHECK(forward[k] == Shape(1, sides[k], sides[k]));
      CHECK(end[k] == Shape(1, 8, 8));  // restored for the loader
    }
    CHECK(std::isfinite(r.history.back().train_loss));
    CHECK(r.test_accuracy > 0.9);  // evaluated at full size
  }
}

TEST_CASE("ProgressiveResizing runs before the augmentations whatever the order given") {
  using T = decltype(Trainer{std::declval<Tiny&>(), optim::SGD{}, nn::SoftmaxCrossEntropy{}, methods::RandAugment{},
                             methods::CutOut{}, methods::ProgressiveResizing{}});
  static_assert(std::is_same_v<std::tuple_element_t<0, T::methods_tuple>, methods::ProgressiveResizing>);
  static_assert(methods::ProgressiveResizing::tag.act == action::restrict);
  static_assert(methods::ProgressiveResizing::tag.comp == component::data);
}

// ---- methods::RandAugment ------------------------------------------------------------------

TEST_CASE("augment: each operation's exact effect on a known image") {
  const Shape s(2, 3, 4);
  std::vector<float> img(24);
  auto reset = [&] {
    for (std::int64_t c = 0; c < 2; ++c)
      for (std::int64_t y = 0; y < 3; ++y)
        for (std::int64_t x = 0; x < 4; ++x) img[static_cast<std::size_t>(off(s, c, y, x))] = 100.f * c + 10.f * y + x + 1;
  };
  auto v = [&](std::int64_t c, std::int64_t y, std::int64_t x) { return img[static_cast<std::size_t>(off(s, c, y, x))]; };
  auto orig = [](std::int64_t c, std::int64_t y, std::int64_t x) { return 100.f * c + 10.f * y + x + 1; };

  SUBCASE("mirror reverses the columns, channels kept together") {
    reset();
    methods::augment::mirror(img.data(), 2, 3, 4);
    for (std::int64_t c = 0; c < 2; ++c)
      for (std::int64_t y = 0; y < 3; ++y)
        for (std::int64_t x = 0; x < 4; ++x) CHECK(v(c, y, x) == orig(c, y, 3 - x));
  }
  SUBCASE("translate moves by whole pixels and zero-fills") {
    for (const auto& d : {std::pair{1, 0}, std::pair{-2, 0}, std::pair{0, 1}, std::pair{0, -1}, std::pair{3, -2},
                          std::pair{5, 0}, std::pair{0, -3}}) {
      const int dx = d.first, dy = d.second;  // (not a structured binding: clang 14 cannot capture one)
      CAPTURE(dx);
      CAPTURE(dy);
      reset();
      methods::augment::translate(img.data(), 2, 3, 4, dx, dy);
      for (std::int64_t c = 0; c < 2; ++c)
        for (std::int64_t y = 0; y < 3; ++y)
          for (std::int64_t x = 0; x < 4; ++x) {
            const std::int64_t sx = x - dx, sy = y - dy;
            const bool inside = sx >= 0 && sx < 4 && sy >= 0 && sy < 3;
            CHECK(v(c, y, x) == (inside ? orig(c, sy, sx) : 0.f));
          }
    }
  }
  SUBCASE("contrast keeps each channel's mean and scales deviations by the factor") {
    reset();
    methods::augment::scale_contrast(img.data(), 2, 3, 4, 1.27f);
    for (std::int64_t c = 0; c < 2; ++c) {
      const float mean = 100.f * c + 10.f + 2.5f;  // mean of 10 y + x + 1 over y < 3, x < 4
      double sum = 0;
      for (std::int64_t y = 0; y < 3; ++y)
        for (std::int64_t x = 0; x < 4; ++x) {
          sum += v(c, y, x);
          CHECK(v(c, y, x) - mean == doctest::Approx(1.27 * (orig(c, y, x) - mean)).epsilon(1e-5));
        }
      CHECK(sum / 12 == doctest::Approx(mean));
    }
  }
  SUBCASE("brightness adds the offset") {
    reset();
    methods::augment::add_offset(img.data(), 24, -0.5f);
    for (std::int64_t c = 0; c < 2; ++c)
      for (std::int64_t y = 0; y < 3; ++y)
        for (std::int64_t x = 0; x < 4; ++x) CHECK(v(c, y, x) == orig(c, y, x) - 0.5f);
  }
}

TEST_CASE("augment::turn: 90 degrees permutes pixels, the centre stays, a ramp turns exactly") {
  // 3 x 3, one channel: turning by +90 degrees (clockwise as displayed) puts input (row 2 - x,
  // column y) at output (y, x).
  std::vector<float> src(9), dst(9);
  for (int p = 0; p < 9; ++p) src[static_cast<std::size_t>(p)] = static_cast<float>(p + 1);
  methods::augment::turn(src.data(), dst.data(), 1, 3, 3, 90.0);
  for (std::int64_t y = 0; y < 3; ++y)
    for (std::int64_t x = 0; x < 3; ++x)
      CHECK(dst[static_cast<std::size_t>(x + 3 * y)] == doctest::Approx(src[static_cast<std::size_t>(y + 3 * (2 - x))]).epsilon(1e-6));
  // Any angle: the centre pixel of an odd image is kept exactly.
  methods::augment::turn(src.data(), dst.data(), 1, 3, 3, 17.0);
  CHECK(dst[4] == src[4]);
  // A linear image v = x turns into v = cos(a) dx + sin(a) dy + cx (bilinear is exact on it)
  // wherever the four neighbours are inside; pixels whose source lies far outside read 0.
  const std::int64_t n = 9;
  std::vector<float> ramp(static_cast<std::size_t>(n * n)), out(static_cast<std::size_t>(n * n));
  for (std::int64_t y = 0; y < n; ++y)
    for (std::int64_t x = 0; x < n; ++x) ramp[static_cast<std::size_t>(x + n * y)] = static_cast<float>(x);
  const double deg = 20.0, a = deg * std::numbers::pi / 180.0;
  methods::augment::turn(ramp.data(), out.data(), 1, n, n, deg);
  for (std::int64_t y = 2; y < n - 2; ++y)
    for (std::int64_t x = 2; x < n - 2; ++x) {
      const double want = std::cos(a) * (x - 4.0) + std::sin(a) * (y - 4.0) + 4.0;
      CHECK(out[static_cast<std::size_t>(x + n * y)] == doctest::Approx(want).epsilon(1e-5));
    }
  methods::augment::turn(ramp.data(), out.data(), 1, n, n, 45.0);
  CHECK(out[0] == 0.f);  // the corner's source is outside the image
}

TEST_CASE("RandAugment: strengths at magnitude 9 and each operation through apply()") {
  const methods::RandAugment ra;  // N = 2, M = 9
  CHECK(ra.options().num_ops == 2);
  CHECK(ra.options().magnitude == 9.f);
  CHECK(ra.shift_pixels(28) == 3);  // 0.3 * 28 / 3 = 2.8
  CHECK(ra.shift_pixels(16) == 2);  // 1.6
  CHECK(ra.rotation_degrees() == doctest::Approx(9.0));
  CHECK(ra.intensity() == doctest::Approx(0.27f));
  std::vector<float> scratch;
  auto base = images(1, 1, 28, 28, [](auto, auto, auto y, auto x) { return static_cast<float>(1 + x + 28 * y); });
  auto b = base;
  ra.apply(methods::augment::shift_x, -1, b.inputs.data.data(), 1, 28, 28, scratch);
  for (std::int64_t y = 0; y < 28; ++y)
    for (std::int64_t x = 0; x < 28; ++x)
      REQUIRE(b.inputs.data(x + 28 * y, 0) == (x + 3 < 28 ? base.inputs.data(x + 3 + 28 * y, 0) : 0.f));
  b = base;
  ra.apply(methods::augment::shift_y, 1, b.inputs.data.data(), 1, 28, 28, scratch);
  for (std::int64_t y = 0; y < 28; ++y)
    for (std::int64_t x = 0; x < 28; ++x)
      REQUIRE(b.inputs.data(x + 28 * y, 0) == (y >= 3 ? base.inputs.data(x + 28 * (y - 3), 0) : 0.f));
  b = base;
  ra.apply(methods::augment::contrast, -1, b.inputs.data.data(), 1, 28, 28, scratch);
  const float mean = base.inputs.data.mean();
  CHECK(b.inputs.data.mean() == doctest::Approx(mean));
  CHECK(b.inputs.data(100, 0) - mean == doctest::Approx(0.73 * (base.inputs.data(100, 0) - mean)).epsilon(1e-4));
  b = base;
  ra.apply(methods::augment::brightness, 1, b.inputs.data.data(), 1, 28, 28, scratch);
  CHECK((b.inputs.data.array() - base.inputs.data.array() - 0.27f).abs().maxCoeff() < 1e-4f);
  b = base;
  ra.apply(methods::augment::rotate, 1, b.inputs.data.data(), 1, 28, 28, scratch);
  std::vector<float> turned(28 * 28);
  methods::augment::turn(base.inputs.data.data(), turned.data(), 1, 28, 28, 9.0);
  for (std::int64_t p = 0; p < 28 * 28; ++p) REQUIRE(b.inputs.data(p, 0) == turned[static_cast<std::size_t>(p)]);
  b = base;
  ra.apply(methods::augment::identity, 1, b.inputs.data.data(), 1, 28, 28, scratch);
  CHECK(b.inputs.data == base.inputs.data);
}

TEST_CASE("RandAugment: a batch gets the drawn operations, exactly") {
  auto make = [] {
    return images(30, 2, 28, 28, [](auto j, auto c, auto y, auto x) { return static_cast<float>(j + c * 0.5f + y * 28 + x); });
  };
  SUBCASE("flip only: once mirrors every image, twice restores it") {
    methods::RandAugment once({.num_ops = 1, .ops = methods::augment::flip_x});
    auto b = make();
    const auto orig = make();
    before_forward(once, b);
    for (std::int64_t j = 0; j < 30; ++j)
      for (std::int64_t c = 0; c < 2; ++c)
        for (std::int64_t y = 0; y < 28; ++y)
          for (std::int64_t x = 0; x < 28; ++x)
            REQUIRE(b.inputs.data(off(b.inputs.shape, c, y, x), j) == orig.inputs.data(off(b.inputs.shape, c, y, 27 - x), j));
    methods::RandAugment twice({.num_ops = 2, .ops = methods::augment::flip_x});
    auto b2 = make();
    before_forward(twice, b2);
    CHECK(b2.inputs.data == orig.inputs.data);
  }
  SUBCASE("shift_x only: each image moved by +-3 pixels as its drawn sign says") {
    methods::RandAugment ra({.num_ops = 1, .magnitude = 9, .ops = methods::augment::shift_x, .seed = 4});
    auto b = make();
    const auto orig = make();
    before_forward(ra, b);
    std::set<int> signs;
    for (std::int64_t j = 0; j < 30; ++j) {
      CHECK(ra.last_op(j, 0) == methods::augment::shift_x);
      const int sgn = ra.last_sign(j, 0);
      signs.insert(sgn);
      for (std::int64_t y = 0; y < 28; ++y)
        for (std::int64_t x = 0; x < 28; ++x) {
          const std::int64_t sx = x - 3 * sgn;
          const float want = sx >= 0 && sx < 28 ? orig.inputs.data(off(b.inputs.shape, 1, y, sx), j) : 0.f;
          REQUIRE(b.inputs.data(off(b.inputs.shape, 1, y, x), j) == want);
        }
    }
    CHECK(signs.size() == 2);
  }
  SUBCASE("magnitude 0: every operation but the flip leaves the images exactly as they were") {
    methods::RandAugment ra({.num_ops = 3, .magnitude = 0,
                             .ops = methods::augment::all_ops & ~std::uint32_t{methods::augment::flip_x}});
    auto b = make();
    before_forward(ra, b);
    CHECK(b.inputs.data == make().inputs.data);
  }
  SUBCASE("all operations are drawn, uniformly enough, and only the enabled ones") {
    methods::RandAugment ra({.num_ops = 2, .seed = 9});
    auto b = make();
    before_forward(ra, b);
    std::set<int> seen;
    for (std::int64_t j = 0; j < 30; ++j)
      for (int k = 0; k < 2; ++k) seen.insert(static_cast<int>(ra.last_op(j, k)));
    CHECK(seen.size() == 7);
    methods::RandAugment two({.ops = methods::augment::rotate | methods::augment::contrast});
    auto b2 = make();
    before_forward(two, b2);
    for (std::int64_t j = 0; j < 30; ++j)
      for (int k = 0; k < 2; ++k)
        CHECK((two.last_op(j, k) == methods::augment::rotate || two.last_op(j, k) == methods::augment::contrast));
  }
}

TEST_CASE("RandAugment: a seed gives the same batches, and checkpoints continue the stream") {
  auto make = [] {
    return images(16, 1, 12, 12, [](auto j, auto, auto y, auto x) { return std::sin(0.3f * x + 0.7f * y + j); });
  };
  methods::RandAugment a({.seed = 7}), b({.seed = 7}), c({.seed = 8});
  auto ba = make(), bb = make(), bc = make();
  before_forward(a, ba);
  before_forward(b, bb);
  before_forward(c, bc);
  CHECK(ba.inputs.data == bb.inputs.data);
  CHECK(ba.inputs.data != bc.inputs.data);
  CHECK(ba.inputs.data != make().inputs.data);

  io::StateWriter w;
  a.state(w);
  const std::string saved = w.take();
  auto next_a = make();
  before_forward(a, next_a);
  methods::RandAugment restored({.seed = 123});
  io::StateReader r(saved, "memory");
  restored.state(r);
  r.finish();
  auto next_r = make();
  before_forward(restored, next_r);
  CHECK(next_r.inputs.data == next_a.inputs.data);

  methods::RandAugment other({.num_ops = 3});
  io::StateReader r2(saved, "memory");
  CHECK_THROWS_WITH_AS(other.state(r2), doctest::Contains("num_ops"), config_error);
}

TEST_CASE("RandAugment: bad options throw config_error naming the option; non-images a shape_error") {
  using O = methods::RandAugmentOptions;
  auto throws_naming = [](O o, const char* field) {
    CAPTURE(field);
    CHECK_THROWS_WITH_AS(methods::RandAugment{o}, doctest::Contains(field), config_error);
  };
  throws_naming({.num_ops = 0}, "num_ops");
  throws_naming({.num_ops = 17}, "num_ops");
  throws_naming({.magnitude = -1.f}, "magnitude");
  throws_naming({.magnitude = 31.f}, "magnitude");
  throws_naming({.magnitude = std::nanf("")}, "magnitude");
  throws_naming({.ops = 0}, "ops");
  throws_naming({.ops = 1u << 7}, "ops");
  CHECK_NOTHROW(methods::RandAugment({.num_ops = 1, .magnitude = 30.f, .ops = methods::augment::identity}));

  methods::RandAugment ra;
  auto flat = images(2, 1, 4, 4, [](auto, auto, auto, auto) { return 1.f; });
  flat.inputs.shape = Shape(16);
  CHECK_THROWS_WITH_AS(before_forward(ra, flat), doctest::Contains("RandAugment"), shape_error);
}

TEST_CASE("RandAugment and ProgressiveResizing: the same batches on one thread and on several") {
  // 200 images of 28 x 28 are enough work to be split over the threads.
  auto make = [] {
    return images(200, 1, 28, 28, [](auto j, auto, auto y, auto x) { return std::cos(0.2f * x - 0.5f * y + j); });
  };
  const int threads = Eigen::nbThreads();
  std::vector<Mat> results;
  for (int t : {1, 2}) {
    set_threads(t);
    methods::RandAugment ra({.seed = 3});
    methods::ProgressiveResizing area, bilinear({.mode = methods::ResizeMode::bilinear});
    for (auto* pr : {&area, &bilinear}) {
      auto b = make();
      before_forward(*pr, b);
      results.push_back(b.inputs.data);
    }
    auto b = make();
    before_forward(ra, b);
    results.push_back(b.inputs.data);
  }
  set_threads(threads);
  for (std::size_t k = 0; k < 3; ++k) CHECK(results[k] == results[k + 3]);
}
