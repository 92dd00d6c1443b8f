// Convolutional layers: exact forward values against a direct reference, and
// finite-difference gradient checks for Conv2d, pooling, BatchNorm2d and Residual.
#include <doctest/doctest.h>

#include "gradcheck.hpp"

#include <cmath>
#include <fasttrain/nn/nn.hpp>

using namespace fasttrain;
using B = cpu::eigen;
using Mat = B::matrix;
using Tensor = B::tensor;

namespace {

// Element (ch, y, x) of sample s (channels fastest).
float at(const Tensor& t, std::int64_t s, std::int64_t ch, std::int64_t y, std::int64_t x) {
  return t.data(ch + t.shape[0] * (x + t.shape[2] * y), s);
}

using gradcheck::check_layer;
using gradcheck::random_image;

}  // namespace

TEST_CASE("Conv2d: forward equals a direct convolution (stride, padding, several channels)") {
  nn::Conv2d<3, 4, 3, 2, 1> conv;
  Rng rng(1);
  conv.reset_parameters(rng);
  B::fill_normal(conv.bias, 0.f, 1.f, rng);
  Tensor x = random_image(3, 7, 6, 2, 2), y;
  conv.forward(x, y, nn::Mode::train);
  REQUIRE(y.shape == Shape(4, 4, 3));  // (7 + 2 - 3) / 2 + 1 = 4, (6 + 2 - 3) / 2 + 1 = 3
  double max_err = 0;
  for (int s = 0; s < 2; ++s)
    for (int o = 0; o < 4; ++o)
      for (int oy = 0; oy < 4; ++oy)
        for (int ox = 0; ox < 3; ++ox) {
          double acc = conv.bias(o);
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx)
              for (int c = 0; c < 3; ++c) {
                const int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                if (iy < 0 || iy >= 7 || ix < 0 || ix >= 6) continue;
                acc += conv.weight(o, (ky * 3 + kx) * 3 + c) * at(x, s, c, iy, ix);
              }
          max_err = std::max(max_err, std::abs(acc - at(y, s, o, oy, ox)));
        }
  CHECK(max_err < 1e-5);
}

TEST_CASE("Conv2d: gradients match finite differences, for chunked batches too") {
  SUBCASE("stride 1, padding 2, 5x5") {
    nn::Conv2d<2, 3, 5, 1, 2> conv;
    check_layer(conv, random_image(2, 6, 5, 3, 3));
  }
  SUBCASE("stride 2, padding 1, 3x3") {
    nn::Conv2d<3, 2, 3, 2, 1> conv;
    check_layer(conv, random_image(3, 7, 7, 2, 4));
  }
  SUBCASE("a batch larger than one patch chunk") {
    // 4 x 4 x 16 x 32 x 32 x 4 bytes = 1 MiB of patches per sample: 4 MiB chunks hold 4 samples.
    nn::Conv2d<16, 2, 4, 1, 0> big;
    Tensor x = random_image(16, 35, 35, 10, 5), y;
    big.forward(x, y, nn::Mode::train);
    // Compare with the same convolution run one sample at a time.
    for (int s = 0; s < 10; s += 9) {
      Tensor one;
      one.resize(x.shape, 1);
      one.data = x.data.col(s);
      Tensor y1;
      big.forward(one, y1, nn::Mode::train);
      CHECK((y1.data.col(0) - y.data.col(s)).cwiseAbs().maxCoeff() < 1e-4f);
    }
    // Backward accumulates the weight gradient over chunks: it equals the sum of the
    // per-sample gradients, and each sample's input gradient is its own.
    Rng rng(6);
    Tensor dy{Mat(y.data.rows(), y.data.cols()), y.shape}, dx;
    B::fill_normal(dy.data, 0.f, 1.f, rng);
    big.backward(x, y, dy, &dx);
    const Mat batch_grad = big.weight_grad;
    Mat sum = Mat::Zero(batch_grad.rows(), batch_grad.cols());
    for (int s = 0; s < 10; ++s) {
      Tensor one, y1, dy1, dx1;
      one.resize(x.shape, 1);
      one.data = x.data.col(s);
      big.forward(one, y1, nn::Mode::train);
      dy1.shape = y1.shape;
      dy1.data = dy.data.col(s);
      big.backward(one, y1, dy1, &dx1);
      sum += big.weight_grad;
      CHECK((dx1.data.col(0) - dx.data.col(s)).cwiseAbs().maxCoeff() < 1e-3f);
    }
    CHECK((sum - batch_grad).cwiseAbs().maxCoeff() < 1e-2f * batch_grad.cwiseAbs().maxCoeff());
  }
}

TEST_CASE("Conv2d: wrong channels or a window larger than the image are shape errors") {
  nn::Conv2d<3, 4, 5> conv;
  Tensor y;
  Tensor two = random_image(2, 8, 8, 1, 1);
  CHECK_THROWS_WITH_AS(conv.forward(two, y, nn::Mode::train), doctest::Contains("expects 3 input channels"),
                       shape_error);
  Tensor tiny = random_image(3, 4, 4, 1, 1);
  CHECK_THROWS_WITH_AS(conv.forward(tiny, y, nn::Mode::train), doctest::Contains("does not fit"), shape_error);
  Tensor flat;
  flat.resize(Shape(48), 1);
  CHECK_THROWS_WITH_AS(conv.forward(flat, y, nn::Mode::train), doctest::Contains("expects image samples"),
                       shape_error);
}

TEST_CASE("MaxPool2d and AvgPool2d: exact values and gradients") {
  Tensor x;
  x.resize(Shape(1, 2, 4), 1);
  // image rows: [1 5 2 0] / [3 4 8 7]
  x.data << 1, 5, 2, 0, 3, 4, 8, 7;
  Tensor y;
  nn::MaxPool2d<2> mp;
  mp.forward(x, y, nn::Mode::train);
  REQUIRE(y.shape == Shape(1, 1, 2));
  CHECK(y.data(0) == 5.f);
  CHECK(y.data(1) == 8.f);
  Tensor dy{Mat::Constant(2, 1, 1.f), y.shape}, dx;
  mp.backward(x, y, dy, &dx);
  CHECK(dx.data(1) == 1.f);  // where the 5 was
  CHECK(dx.data(6) == 1.f);  // where the 8 was
  CHECK(dx.data.sum() == 2.f);
  nn::AvgPool2d<2> ap;
  ap.forward(x, y, nn::Mode::train);
  CHECK(y.data(0) == doctest::Approx(13.f / 4));
  CHECK(y.data(1) == doctest::Approx(17.f / 4));

  SUBCASE("gradients, several channels, overlapping windows") {
    nn::MaxPool2d<3, 2> mp3;
    check_layer(mp3, random_image(3, 7, 7, 2, 8), 1e-3);
    nn::AvgPool2d<2> ap2;
    check_layer(ap2, random_image(3, 6, 4, 2, 9), 1e-3);
    nn::GlobalAvgPool gap;
    check_layer(gap, random_image(4, 3, 5, 2, 10), 1e-3);
  }
}

TEST_CASE("GlobalAvgPool: channel means") {
  Tensor x = random_image(3, 4, 5, 2, 11), y;
  nn::GlobalAvgPool gap;
  gap.forward(x, y, nn::Mode::train);
  REQUIRE(y.shape == Shape(3));
  double mean = 0;
  for (int yy = 0; yy < 4; ++yy)
    for (int xx = 0; xx < 5; ++xx) mean += at(x, 1, 2, yy, xx);
  CHECK(y.data(2, 1) == doctest::Approx(mean / 20).epsilon(1e-5));
}

TEST_CASE("BatchNorm2d: normalises each channel, tracks running statistics, gradients match") {
  nn::BatchNorm2d<3> bn;
  Tensor x = random_image(3, 4, 4, 8, 12);
  for (Eigen::Index s = 0; s < 8; ++s)
    for (int p = 0; p < 16; ++p) x.data(1 + 3 * p, s) = x.data(1 + 3 * p, s) * 5.f + 2.f;  // channel 1 off-centre
  Tensor y;
  bn.forward(x, y, nn::Mode::train);
  const auto Y = B::view(y.data.data(), 3, 16 * 8);
  CHECK(Y.row(1).mean() == doctest::Approx(0.0).epsilon(1e-5));
  CHECK(Y.row(1).array().square().mean() == doctest::Approx(1.0).epsilon(1e-3));
  CHECK(bn.running_mean(1) == doctest::Approx(0.1 * B::view(x.data.data(), 3, 128).row(1).mean()).epsilon(1e-4));
  // Evaluation uses the running statistics: with momentum 1 they are this batch's.
  nn::BatchNorm2d<3> once{1.0f};
  once.forward(x, y, nn::Mode::train);
  Tensor ye;
  once.forward(x, ye, nn::Mode::eval);
  CHECK((ye.data - y.data).cwiseAbs().maxCoeff() < 0.05f);  // unbiased vs biased variance: m/(m-1) = 128/127

  nn::BatchNorm2d<3> g;
  Rng rng(3);
  B::fill_normal(g.weight, 1.f, 0.3f, rng);
  B::fill_normal(g.bias, 0.f, 0.3f, rng);
  check_layer(g, random_image(3, 3, 2, 4, 13), 1e-3, 2e-3);
  CHECK_THROWS_AS(nn::BatchNorm2d<3>{0.f}, config_error);
}

TEST_CASE("Residual: identity and projection shortcuts, gradients match") {
  using Body = nn::Sequential<nn::Conv2d<2, 2, 3, 1, 1>, nn::Tanh, nn::Conv2d<2, 2, 3, 1, 1>>;
  nn::Residual<Body> block;
  Rng rng(4);
  block.reset_parameters(rng);
  Tensor x = random_image(2, 5, 4, 2, 14), y, by;
  block.forward(x, y, nn::Mode::train);
  block.body().forward(x, by, nn::Mode::train);
  CHECK((y.data - by.data - x.data).cwiseAbs().maxCoeff() < 1e-6f);
  check_layer(block, x);

  using Down = nn::Residual<nn::Sequential<nn::Conv2d<2, 3, 3, 2, 1>, nn::GELU, nn::Conv2d<3, 3, 3, 1, 1>>,
                            nn::Conv2d<2, 3, 1, 2, 0>>;
  static_assert(Down::in_channels == 2 && Down::out_channels == 3);
  Down down;
  down.reset_parameters(rng);
  check_layer(down, random_image(2, 6, 6, 2, 15));
}

// The layer concepts methods find their layers by (StochasticDepth, SWA): exactly the layers
// that have the members.
static_assert(nn::SkippableBody<nn::Residual<nn::Sequential<nn::Conv2d<2, 2, 3, 1, 1>>>>);
static_assert(nn::SkippableBody<nn::Residual<nn::Identity>&>);  // as visit_layers passes it
static_assert(!nn::SkippableBody<nn::Sequential<nn::Conv2d<2, 2, 3, 1, 1>>>);
static_assert(nn::RunningStatistics<nn::BatchNorm2d<4>>);
static_assert(nn::RunningStatistics<nn::GhostBatchNorm2d<4, 8>&>);
static_assert(!nn::RunningStatistics<nn::Conv2d<2, 2, 3, 1, 1>>);

TEST_CASE("Residual: a skipped body passes the shortcut and gets zero gradients; a scaled body's gradients match") {
  using Body = nn::Sequential<nn::Conv2d<2, 2, 3, 1, 1>, nn::Tanh, nn::Conv2d<2, 2, 3, 1, 1>>;
  nn::Residual<Body> block;
  Rng rng(5);
  block.reset_parameters(rng);
  Tensor x = random_image(2, 5, 4, 2, 17), y, by, dy = random_image(2, 5, 4, 2, 18), dx;
  block.body().forward(x, by, nn::Mode::train);

  block.set_body(false);
  block.forward(x, y, nn::Mode::train);
  CHECK(y.data == x.data);  // identity shortcut only
  block.backward(x, y, dy, &dx);
  CHECK(dx.data == dy.data);
  block.body().for_each_parameter([](auto&, auto& g) { CHECK(g.cwiseAbs().maxCoeff() == 0.f); });
  block.forward(x, y, nn::Mode::eval);  // evaluation always runs the whole block
  CHECK((y.data - by.data - x.data).cwiseAbs().maxCoeff() < 1e-6f);

  block.set_body(true, 1.25f);
  block.forward(x, y, nn::Mode::train);
  CHECK((y.data - 1.25f * by.data - x.data).cwiseAbs().maxCoeff() < 1e-5f);
  check_layer(block, x);

  using Down = nn::Residual<nn::Sequential<nn::Conv2d<2, 3, 3, 2, 1>, nn::GELU, nn::Conv2d<3, 3, 3, 1, 1>>,
                            nn::Conv2d<2, 3, 1, 2, 0>>;
  Down down;
  down.reset_parameters(rng);
  Tensor x2 = random_image(2, 6, 6, 2, 19), sc;
  down.set_body(false);
  down.forward(x2, y, nn::Mode::train);
  down.shortcut().forward(x2, sc, nn::Mode::train);
  CHECK(y.data == sc.data);  // the projection alone
  check_layer(down, x2);     // shortcut gradients exact, body gradients zero
}

TEST_CASE("a small CNN: static channel checks and a whole-network gradient check") {
  using Net = nn::Sequential<nn::Conv2d<1, 4, 3, 1, 1>, nn::BatchNorm2d<4>, nn::ReLU, nn::MaxPool2d<2>,
                             nn::Conv2d<4, 6, 3, 1, 1>, nn::Tanh, nn::GlobalAvgPool, nn::Linear<6, 3>>;
  static_assert(Net::in_channels == 1);
  Net net;
  net.reset_parameters(21);
  Tensor x = random_image(1, 8, 8, 3, 16);
  REQUIRE(net.output_shape(x.shape) == Shape(3));
  B::labels labels{0, 2, 1};
  nn::SoftmaxCrossEntropy loss;
  // ReLU and max-pool kinks: a small step, and a looser tolerance than the other checks.
  gradcheck::check_network_gradients(net, x, loss, labels, 1e-3, 5e-3);
}

TEST_CASE("Conv2d: splitting the batch over threads gives the GEMM-parallel results") {
  // Each thread's part of 13 samples spans several 1 MiB chunks, so the per-thread weight
  // gradients are accumulated over chunks and then summed across threads.
  const int before = B::threads();
  set_threads(2);
  nn::Conv2d<16, 3, 4, 1, 1> by_samples, by_gemm;
  by_samples.set_chunk_bytes(1 << 20);
  by_gemm.set_chunk_bytes(1 << 20);
  by_samples.set_parallelism(nn::ConvParallel::samples);
  by_gemm.set_parallelism(nn::ConvParallel::gemm);
  Rng rng(8);
  by_samples.reset_parameters(rng);
  by_gemm.weight = by_samples.weight;
  Tensor x = random_image(16, 33, 33, 13, 9), ys, yg, dxs, dxg;
  by_samples.forward(x, ys, nn::Mode::train);
  by_gemm.forward(x, yg, nn::Mode::train);
  CHECK((ys.data - yg.data).cwiseAbs().maxCoeff() < 1e-5f * yg.data.cwiseAbs().maxCoeff());
  Tensor dy{Mat(ys.data.rows(), ys.data.cols()), ys.shape};
  B::fill_normal(dy.data, 0.f, 1.f, rng);
  by_samples.backward(x, ys, dy, &dxs);
  by_gemm.backward(x, yg, dy, &dxg);
  CHECK((dxs.data - dxg.data).cwiseAbs().maxCoeff() < 1e-5f * dxg.data.cwiseAbs().maxCoeff());
  CHECK((by_samples.weight_grad - by_gemm.weight_grad).cwiseAbs().maxCoeff() <
        1e-5f * by_gemm.weight_grad.cwiseAbs().maxCoeff());
  CHECK((by_samples.bias_grad - by_gemm.bias_grad).cwiseAbs().maxCoeff() < 1e-4f);
  // Without a weight gradient from a previous call leaking in: a second backward is the same.
  const Mat first = by_samples.weight_grad;
  by_samples.backward(x, ys, dy, &dxs);
  CHECK(by_samples.weight_grad == first);
  set_threads(before);
}
