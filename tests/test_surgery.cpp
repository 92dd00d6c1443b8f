// Layers that model surgery inserts (BlurPool2d, SqueezeExcite2d, GhostBatchNorm2d): exact
// expectations and gradient checks; the compile-time surgery that puts them in a network.
#include <doctest/doctest.h>

#include <fasttrain/fasttrain.hpp>

#include "gradcheck.hpp"

using namespace fasttrain;

namespace {

using B = cpu::eigen;
using Mat = B::matrix;
using Tensor = B::tensor;
using gradcheck::check_layer;
using gradcheck::random_image;

// Element (ch, y, x) of sample s (channels fastest).
float at(const Tensor& t, std::int64_t s, std::int64_t ch, std::int64_t y, std::int64_t x) {
  return t.data(ch + t.shape[0] * (x + t.shape[2] * y), s);
}
float& at(Tensor& t, std::int64_t s, std::int64_t ch, std::int64_t y, std::int64_t x) {
  return t.data(ch + t.shape[0] * (x + t.shape[2] * y), s);
}

// The blur written directly from its definition: the 3x3 binomial kernel (1 2 1; 2 4 2;
// 1 2 1) / 16 at every stride-th pixel, zeros outside the image, in double precision.
Tensor reference_blur(const Tensor& x, std::int64_t stride) {
  const std::int64_t C = x.shape[0], H = x.shape[1], W = x.shape[2];
  const std::int64_t Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
  const double k[3][3] = {{1, 2, 1}, {2, 4, 2}, {1, 2, 1}};
  Tensor y;
  y.resize(Shape(C, Ho, Wo), x.batch());
  for (Eigen::Index s = 0; s < x.batch(); ++s)
    for (std::int64_t c = 0; c < C; ++c)
      for (std::int64_t oy = 0; oy < Ho; ++oy)
        for (std::int64_t ox = 0; ox < Wo; ++ox) {
          double acc = 0;
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              const std::int64_t iy = oy * stride - 1 + ky, ix = ox * stride - 1 + kx;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              acc += k[ky][kx] / 16.0 * at(x, s, c, iy, ix);
            }
          at(y, s, c, oy, ox) = static_cast<float>(acc);
        }
  return y;
}

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

}  // namespace

// ---- BlurPool2d ---------------------------------------------------------------------------

TEST_CASE("BlurPool2d: a delta blurs to the binomial kernel, a constant image to the kernel's in-image mass") {
  nn::BlurPool2d<1> blur;
  Tensor x, y;
  x.resize(Shape(2, 5, 5), 1);
  x.data.setZero();
  at(x, 0, 1, 2, 2) = 16.f;  // channel 1 only: channels are filtered separately
  blur.forward(x, y, nn::Mode::train);
  REQUIRE(y.shape == Shape(2, 5, 5));
  const float kernel[3][3] = {{1, 2, 1}, {2, 4, 2}, {1, 2, 1}};
  for (int yy = 0; yy < 5; ++yy)
    for (int xx = 0; xx < 5; ++xx) {
      const bool inside = yy >= 1 && yy <= 3 && xx >= 1 && xx <= 3;
      CHECK(at(y, 0, 1, yy, xx) == (inside ? kernel[yy - 1][xx - 1] : 0.f));
      CHECK(at(y, 0, 0, yy, xx) == 0.f);
    }

  // All ones, 3x3: the centre keeps all 16/16 of the kernel, an edge pixel 12/16, a corner 9/16.
  Tensor ones;
  ones.resize(Shape(1, 3, 3), 1);
  ones.data.setOnes();
  blur.forward(ones, y, nn::Mode::train);
  CHECK(at(y, 0, 0, 1, 1) == 1.f);
  CHECK(at(y, 0, 0, 0, 1) == 0.75f);
  CHECK(at(y, 0, 0, 1, 2) == 0.75f);
  CHECK(at(y, 0, 0, 0, 0) == 0.5625f);
  CHECK(at(y, 0, 0, 2, 2) == 0.5625f);
}

TEST_CASE("BlurPool2d: stride 2 keeps the blur at every second pixel; output sizes") {
  // A 4x5 image with 16 at row 1, column 2. Outputs sit over input rows 0, 2 and columns
  // 0, 2, 4; the delta is one row away from both output rows (weight 1) and under the
  // middle output column (weight 2), two columns away from the others (weight 0).
  nn::BlurPool2d<2> pool;
  Tensor x, y;
  x.resize(Shape(1, 4, 5), 1);
  x.data.setZero();
  at(x, 0, 0, 1, 2) = 16.f;
  pool.forward(x, y, nn::Mode::train);
  REQUIRE(y.shape == Shape(1, 2, 3));
  const float expected[2][3] = {{0, 2, 0}, {0, 2, 0}};
  for (int oy = 0; oy < 2; ++oy)
    for (int ox = 0; ox < 3; ++ox) CHECK(at(y, 0, 0, oy, ox) == expected[oy][ox]);

  CHECK(pool.output_shape(Shape(3, 7, 6)) == Shape(3, 4, 3));
  CHECK(pool.output_shape(Shape(5, 28, 28)) == Shape(5, 14, 14));
  CHECK(pool.output_shape(Shape(1, 1, 1)) == Shape(1, 1, 1));
  CHECK(nn::BlurPool2d<1>{}.output_shape(Shape(3, 7, 6)) == Shape(3, 7, 6));
  CHECK(nn::BlurPool2d<3>{}.output_shape(Shape(2, 7, 6)) == Shape(2, 3, 2));
  static_assert(nn::BlurPool2d<2>::in_features == nn::any && nn::BlurPool2d<2>::out_features == nn::dynamic);
  static_assert(nn::detail::in_channels_of<nn::BlurPool2d<2>>() == nn::any);
  static_assert(!nn::BlurPool2d<2>::has_parameters);
  CHECK(nn::BlurPool2d<2>::name() == "BlurPool2d<2>");
}

TEST_CASE("BlurPool2d: forward equals the direct filter, for several strides, sizes and channel counts") {
  for (std::int64_t stride : {1, 2, 3}) {
    CAPTURE(stride);
    for (const auto& chw : {std::array<std::int64_t, 3>{3, 7, 6}, {1, 4, 9}, {5, 2, 2}, {2, 1, 3}}) {
      const std::int64_t c = chw[0], h = chw[1], w = chw[2];  // (clang 14 cannot capture a structured binding)
      CAPTURE(c);
      CAPTURE(h);
      CAPTURE(w);
      Tensor x = random_image(c, h, w, 3, static_cast<std::uint64_t>(100 + stride + h)), y;
      if (stride == 1) nn::BlurPool2d<1>{}.forward(x, y, nn::Mode::train);
      if (stride == 2) nn::BlurPool2d<2>{}.forward(x, y, nn::Mode::train);
      if (stride == 3) nn::BlurPool2d<3>{}.forward(x, y, nn::Mode::train);
      const Tensor ref = reference_blur(x, stride);
      REQUIRE(y.shape == ref.shape);
      CHECK((y.data - ref.data).cwiseAbs().maxCoeff() < 1e-5f);
    }
  }
}

TEST_CASE("BlurPool2d: non-image inputs and inconsistent batches are shape errors") {
  nn::BlurPool2d<2> pool;
  Tensor y;
  CHECK_THROWS_WITH_AS(pool.output_shape(Shape(48)), doctest::Contains("BlurPool2d<2>: expects image samples"),
                       shape_error);
  CHECK_THROWS_WITH_AS(pool.output_shape(Shape(3, 0, 4)), doctest::Contains("does not fit"), shape_error);
  Tensor flat;
  flat.resize(Shape(12), 2);
  flat.data.setZero();
  CHECK_THROWS_AS(pool.forward(flat, y, nn::Mode::train), shape_error);
  Tensor bad = random_image(2, 4, 4, 1, 1);
  bad.shape = Shape(2, 4, 3);  // 24 values declared, 32 stored
  CHECK_THROWS_WITH_AS(pool.forward(bad, y, nn::Mode::train), doctest::Contains("BlurPool2d<2>"), shape_error);
}

TEST_CASE("BlurPool2d: gradients match finite differences; backward is the exact transpose on threaded batches") {
  SUBCASE("stride 1") {
    nn::BlurPool2d<1> blur;
    check_layer(blur, random_image(3, 5, 4, 2, 21), 1e-2, 1e-4);
  }
  SUBCASE("stride 2, odd and even sizes") {
    nn::BlurPool2d<2> pool;
    check_layer(pool, random_image(2, 5, 6, 2, 22), 1e-2, 1e-4);
    check_layer(pool, random_image(3, 4, 3, 2, 23), 1e-2, 1e-4);
  }
  SUBCASE("stride 3") {
    nn::BlurPool2d<3> pool;
    check_layer(pool, random_image(2, 7, 5, 2, 24), 1e-2, 1e-4);
  }
  SUBCASE("a batch split over threads: <dy, blur x> = <blur^T dy, x>, and the forward matches the reference") {
    const int before = B::threads();
    set_threads(2);
    // 40 samples of 4 x 20 x 21 = 67200 values: above the threshold for splitting over threads.
    Tensor x = random_image(4, 20, 21, 40, 25), y, dx;
    nn::BlurPool2d<2> pool;
    pool.forward(x, y, nn::Mode::train);
    CHECK((y.data - reference_blur(x, 2).data).cwiseAbs().maxCoeff() < 1e-5f);
    Tensor dy = random_image(4, 10, 11, 40, 26);
    REQUIRE(dy.data.rows() == y.data.rows());
    pool.backward(x, y, dy, &dx);
    const double lhs = (dy.data.cast<double>().array() * y.data.cast<double>().array()).sum();
    const double rhs = (dx.data.cast<double>().array() * x.data.cast<double>().array()).sum();
    CHECK(lhs == doctest::Approx(rhs).epsilon(1e-5));
    // Every sample's input gradient is its own: the same as backward on that sample alone.
    for (Eigen::Index s : {Eigen::Index{0}, Eigen::Index{23}, Eigen::Index{39}}) {
      Tensor one, y1, dy1, dx1;
      one.resize(x.shape, 1);
      one.data = x.data.col(s);
      pool.forward(one, y1, nn::Mode::train);
      dy1.resize(y1.shape, 1);
      dy1.data = dy.data.col(s);
      pool.backward(one, y1, dy1, &dx1);
      CHECK((dx1.data.col(0) - dx.data.col(s)).cwiseAbs().maxCoeff() == 0.f);
    }
    set_threads(before);
  }
}

// ---- SqueezeExcite2d ----------------------------------------------------------------------

TEST_CASE("SqueezeExcite2d: zero weights gate every channel by exactly sigmoid(bias2)") {
  nn::SqueezeExcite2d<3, 2> se;  // constructed with zero weights and biases
  Tensor x = random_image(3, 4, 5, 3, 31), y;
  se.forward(x, y, nn::Mode::train);
  REQUIRE(y.shape == x.shape);
  CHECK(y.data == (x.data * 0.5f).eval());  // sigmoid(0) = 1/2, exactly
  se.fc2_bias << 0.f, 2.f, -1.f;
  se.forward(x, y, nn::Mode::eval);
  for (int c = 0; c < 3; ++c)
    CHECK(at(y, 2, c, 3, 1) == doctest::Approx(sigmoid(se.fc2_bias(c)) * at(x, 2, c, 3, 1)).epsilon(1e-6));
}

TEST_CASE("SqueezeExcite2d: hand-computed gates, the ReLU bottleneck included") {
  nn::SqueezeExcite2d<2, 1> se;
  se.fc1_weight << 0.5f, 1.f;
  se.fc1_bias << -0.5f;
  se.fc2_weight << 2.f, -4.f;
  se.fc2_bias << 0.f, 1.f;
  // Two samples of 2 channels x 1 x 2 pixels.
  Tensor x;
  x.resize(Shape(2, 1, 2), 2);
  // sample 0: channel 0 = [1, 3] (mean 2), channel 1 = [2, -2] (mean 0)
  //   h = ReLU(0.5 * 2 + 1 * 0 - 0.5) = 0.5, gates = sigmoid(2 * 0.5 + 0, -4 * 0.5 + 1) = sigmoid(1), sigmoid(-1)
  // sample 1: channel 0 = [-1, -1] (mean -1), channel 1 = [0, 0.5] (mean 0.25)
  //   h = ReLU(-0.5 + 0.25 - 0.5) = 0, gates = sigmoid(0), sigmoid(1)
  at(x, 0, 0, 0, 0) = 1.f;
  at(x, 0, 0, 0, 1) = 3.f;
  at(x, 0, 1, 0, 0) = 2.f;
  at(x, 0, 1, 0, 1) = -2.f;
  at(x, 1, 0, 0, 0) = -1.f;
  at(x, 1, 0, 0, 1) = -1.f;
  at(x, 1, 1, 0, 0) = 0.f;
  at(x, 1, 1, 0, 1) = 0.5f;
  Tensor y;
  se.forward(x, y, nn::Mode::train);
  const double gates[2][2] = {{sigmoid(1), sigmoid(-1)}, {0.5, sigmoid(1)}};
  for (int s = 0; s < 2; ++s)
    for (int c = 0; c < 2; ++c)
      for (int p = 0; p < 2; ++p) {
        CAPTURE(s);
        CAPTURE(c);
        CAPTURE(p);
        CHECK(at(y, s, c, 0, p) == doctest::Approx(gates[s][c] * at(x, s, c, 0, p)).epsilon(1e-6));
      }

  // Backward, by hand for sample 1 alone with dL/dy = 1: da = sum_p x, so da = (-2, 0.5);
  // h = 0 cuts fc1 off (its gradients are 0); fc2's bias gradient is da a (1 - a).
  Tensor one, y1, dy1, dx1;
  one.resize(x.shape, 1);
  one.data = x.data.col(1);
  se.forward(one, y1, nn::Mode::train);
  dy1.resize(y1.shape, 1);
  dy1.data.setOnes();
  se.backward(one, y1, dy1, &dx1);
  CHECK(se.fc1_weight_grad.cwiseAbs().maxCoeff() == 0.f);
  CHECK(se.fc1_bias_grad(0) == 0.f);
  CHECK(se.fc2_weight_grad.cwiseAbs().maxCoeff() == 0.f);  // h = 0
  CHECK(se.fc2_bias_grad(0) == doctest::Approx(-2.0 * 0.25).epsilon(1e-6));
  CHECK(se.fc2_bias_grad(1) == doctest::Approx(0.5 * sigmoid(1) * (1 - sigmoid(1))).epsilon(1e-6));
  // No path through the mean: dx = a dy.
  CHECK(at(dx1, 0, 0, 0, 1) == doctest::Approx(0.5).epsilon(1e-6));
  CHECK(at(dx1, 0, 1, 0, 0) == doctest::Approx(sigmoid(1)).epsilon(1e-6));
}

TEST_CASE("SqueezeExcite2d: gradients match finite differences") {
  nn::SqueezeExcite2d<4, 3> se;
  Rng rng(32);
  se.reset_parameters(rng);
  B::fill_normal(se.fc1_bias, 0.f, 0.5f, rng);
  B::fill_normal(se.fc2_bias, 0.f, 0.5f, rng);
  // Larger inputs so that the means, not only the gates' direct path, carry gradient.
  Tensor x = random_image(4, 3, 2, 5, 33);
  x.data.array() += 0.7f;
  check_layer(se, x, 1e-3, 2e-3);

  SUBCASE("a batch split over threads equals sample-by-sample") {
    const int before = B::threads();
    set_threads(2);
    Tensor big = random_image(4, 16, 16, 70, 34), yb, dxb;  // 71680 values: threaded
    se.forward(big, yb, nn::Mode::train);
    Tensor dy = random_image(4, 16, 16, 70, 35);
    se.backward(big, yb, dy, &dxb);
    const Mat w1g = se.fc1_weight_grad, b2g = se.fc2_bias_grad;
    Mat sum_w1 = Mat::Zero(w1g.rows(), w1g.cols()), sum_b2 = Mat::Zero(b2g.rows(), 1);
    for (Eigen::Index s = 0; s < 70; ++s) {
      Tensor one, y1, dy1, dx1;
      one.resize(big.shape, 1);
      one.data = big.data.col(s);
      se.forward(one, y1, nn::Mode::train);
      CHECK((y1.data.col(0) - yb.data.col(s)).cwiseAbs().maxCoeff() < 1e-6f);
      dy1.resize(y1.shape, 1);
      dy1.data = dy.data.col(s);
      se.backward(one, y1, dy1, &dx1);
      CHECK((dx1.data.col(0) - dxb.data.col(s)).cwiseAbs().maxCoeff() < 1e-5f);
      sum_w1 += se.fc1_weight_grad;
      sum_b2 += se.fc2_bias_grad;
    }
    CHECK((sum_w1 - w1g).cwiseAbs().maxCoeff() < 1e-3f * std::max(1.f, w1g.cwiseAbs().maxCoeff()));
    CHECK((sum_b2 - b2g).cwiseAbs().maxCoeff() < 1e-3f * std::max(1.f, b2g.cwiseAbs().maxCoeff()));
    set_threads(before);
  }
}

TEST_CASE("SqueezeExcite2d: shapes, names, initialisation and a place in a network") {
  nn::SqueezeExcite2d<3, 2> se;
  CHECK(se.output_shape(Shape(3, 5, 4)) == Shape(3, 5, 4));
  CHECK_THROWS_WITH_AS(se.output_shape(Shape(2, 5, 4)),
                       doctest::Contains("SqueezeExcite2d<3,2>: expects 3 input channels"), shape_error);
  CHECK_THROWS_WITH_AS(se.output_shape(Shape(3)), doctest::Contains("expects image samples"), shape_error);
  Tensor y, two = random_image(2, 3, 3, 1, 36);
  CHECK_THROWS_AS(se.forward(two, y, nn::Mode::train), shape_error);

  std::vector<std::string> names;
  se.parameter_names(names, "4.");
  REQUIRE(names.size() == 4);
  CHECK(names[0] == "4.SqueezeExcite2d<3,2>.fc1.weight");
  CHECK(names[1] == "4.SqueezeExcite2d<3,2>.fc1.bias");
  CHECK(names[2] == "4.SqueezeExcite2d<3,2>.fc2.weight");
  CHECK(names[3] == "4.SqueezeExcite2d<3,2>.fc2.bias");
  std::vector<Eigen::Index> sizes;
  se.for_each_parameter([&](Mat& p, Mat& g) {
    CHECK(p.rows() == g.rows());
    CHECK(p.cols() == g.cols());
    sizes.push_back(p.size());
  });
  CHECK(sizes == std::vector<Eigen::Index>{6, 2, 6, 3});

  // Like Linear<3, 2> and Linear<2, 3>: He-uniform within sqrt(6 / fan_in), zero biases.
  Rng rng(37);
  se.fc1_bias.setOnes();
  se.reset_parameters(rng);
  CHECK(se.fc1_weight.cwiseAbs().maxCoeff() <= std::sqrt(6.f / 3.f));
  CHECK(se.fc2_weight.cwiseAbs().maxCoeff() <= std::sqrt(6.f / 2.f));
  CHECK(se.fc1_weight.cwiseAbs().minCoeff() > 0.f);
  CHECK(se.fc1_bias.isZero());
  CHECK(se.fc2_bias.isZero());

  using Net = nn::Sequential<nn::Conv2d<1, 3, 3, 1, 1>, nn::SqueezeExcite2d<3, 2>, nn::ReLU, nn::BlurPool2d<2>,
                             nn::GhostBatchNorm2d<3, 2>, nn::GlobalAvgPool, nn::Linear<3, 2>>;
  static_assert(nn::SqueezeExcite2d<3, 2>::in_channels == 3 && nn::SqueezeExcite2d<3, 2>::out_channels == 3);
  static_assert(Net::in_channels == 1);
  Net net;
  net.reset_parameters(38);
  const auto all = net.parameter_names();
  CHECK(std::find(all.begin(), all.end(), "1.SqueezeExcite2d<3,2>.fc2.weight") != all.end());
  CHECK(std::find(all.begin(), all.end(), "4.GhostBatchNorm2d<3,2>.weight") != all.end());
  Tensor x = random_image(1, 6, 5, 5, 39);
  REQUIRE(net.output_shape(x.shape) == Shape(2));
  B::labels labels{0, 1, 1, 0, 1};
  nn::SoftmaxCrossEntropy loss;
  gradcheck::check_network_gradients(net, x, loss, labels, 1e-3, 5e-3);
}

// ---- GhostBatchNorm2d ---------------------------------------------------------------------

TEST_CASE("GhostBatchNorm2d: each ghost batch is normalised by its own statistics; running statistics per chunk") {
  // One channel, one value per sample, ghost batches of 2: [1, 3] and [10, 20].
  // Chunk 1: mean 2, biased variance 1; chunk 2: mean 15, biased variance 25.
  nn::GhostBatchNorm2d<1, 2> gbn;
  Tensor x;
  x.resize(Shape(1), 4);
  x.data << 1.f, 3.f, 10.f, 20.f;
  Tensor y;
  gbn.forward(x, y, nn::Mode::train);
  const double e = 1e-5;
  CHECK(y.data(0) == doctest::Approx(-1 / std::sqrt(1 + e)).epsilon(1e-6));
  CHECK(y.data(1) == doctest::Approx(1 / std::sqrt(1 + e)).epsilon(1e-6));
  CHECK(y.data(2) == doctest::Approx(-5 / std::sqrt(25 + e)).epsilon(1e-6));
  CHECK(y.data(3) == doctest::Approx(5 / std::sqrt(25 + e)).epsilon(1e-6));
  // Momentum 0.1, unbiased variances 2 and 50, chunk 1 first:
  //   mean: 0.9 * 0 + 0.1 * 2 = 0.2, then 0.9 * 0.2 + 0.1 * 15 = 1.68
  //   var:  0.9 * 1 + 0.1 * 2 = 1.1, then 0.9 * 1.1 + 0.1 * 50 = 5.99
  CHECK(gbn.running_mean(0) == doctest::Approx(1.68).epsilon(1e-6));
  CHECK(gbn.running_var(0) == doctest::Approx(5.99).epsilon(1e-6));
  // Evaluation uses them, with the learned scale and shift.
  gbn.weight << 2.f;
  gbn.bias << 0.5f;
  gbn.forward(x, y, nn::Mode::eval);
  CHECK(y.data(3) == doctest::Approx(2 * (20 - 1.68) / std::sqrt(5.99 + e) + 0.5).epsilon(1e-5));

  // A last chunk with one value per channel cannot be normalised (as BatchNorm2d's batch of 1).
  Tensor five;
  five.resize(Shape(1), 5);
  five.data << 1.f, 2.f, 3.f, 4.f, 5.f;
  CHECK_THROWS_WITH_AS(gbn.forward(five, y, nn::Mode::train), doctest::Contains("GhostBatchNorm2d<1,2>"), shape_error);
  CHECK_NOTHROW(gbn.forward(five, y, nn::Mode::eval));

  // With momentum 1 the running statistics are the last ghost batch's: [10, 20], mean 15,
  // unbiased variance 50.
  gbn.set_momentum(1.f);
  gbn.forward(x, y, nn::Mode::train);
  CHECK(gbn.running_mean(0) == 15.f);
  CHECK(gbn.running_var(0) == doctest::Approx(50.0).epsilon(1e-6));
}

TEST_CASE("GhostBatchNorm2d: images in uneven ghost batches, against per-chunk statistics computed directly") {
  // 7 samples of 3 x 2 x 3 in ghost batches of 3: chunks of 3, 3 and 1 samples.
  nn::GhostBatchNorm2d<3, 3> gbn{0.2f, 1e-3f};
  Rng rng(41);
  B::fill_normal(gbn.weight, 1.f, 0.3f, rng);
  B::fill_normal(gbn.bias, 0.f, 0.3f, rng);
  Tensor x = random_image(3, 2, 3, 7, 42), y;
  for (Eigen::Index s = 0; s < 7; ++s)
    for (int p = 0; p < 6; ++p) x.data(2 + 3 * p, s) = x.data(2 + 3 * p, s) * 4.f + static_cast<float>(s);
  gbn.forward(x, y, nn::Mode::train);
  const int starts[] = {0, 3, 6, 7};
  std::vector<double> rm(3, 0.0), rv(3, 1.0);
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 3; ++c) {
      double sum = 0, sq = 0;
      int m = 0;
      for (int s = starts[k]; s < starts[k + 1]; ++s)
        for (int p = 0; p < 6; ++p, ++m) sum += x.data(c + 3 * p, s);
      const double mean = sum / m;
      for (int s = starts[k]; s < starts[k + 1]; ++s)
        for (int p = 0; p < 6; ++p) sq += (x.data(c + 3 * p, s) - mean) * (x.data(c + 3 * p, s) - mean);
      const double var = sq / m;
      for (int s = starts[k]; s < starts[k + 1]; ++s)
        for (int p = 0; p < 6; ++p) {
          const double want = gbn.weight(c) * (x.data(c + 3 * p, s) - mean) / std::sqrt(var + 1e-3) + gbn.bias(c);
          CHECK(y.data(c + 3 * p, s) == doctest::Approx(want).epsilon(1e-4));
        }
      rm[static_cast<std::size_t>(c)] = 0.8 * rm[static_cast<std::size_t>(c)] + 0.2 * mean;
      rv[static_cast<std::size_t>(c)] = 0.8 * rv[static_cast<std::size_t>(c)] + 0.2 * var * m / (m - 1);
    }
  for (int c = 0; c < 3; ++c) {
    CHECK(gbn.running_mean(c) == doctest::Approx(rm[static_cast<std::size_t>(c)]).epsilon(1e-5));
    CHECK(gbn.running_var(c) == doctest::Approx(rv[static_cast<std::size_t>(c)]).epsilon(1e-5));
  }
  // Not BatchNorm over the whole batch: the chunks' statistics differ (channel 2 drifts with s).
  nn::BatchNorm2d<3> bn{0.2f, 1e-3f};
  bn.weight = gbn.weight;
  bn.bias = gbn.bias;
  Tensor yb;
  bn.forward(x, yb, nn::Mode::train);
  CHECK((yb.data - y.data).cwiseAbs().maxCoeff() > 0.1f);
}

TEST_CASE("GhostBatchNorm2d: a batch of at most GhostSize samples is exactly BatchNorm2d") {
  for (Eigen::Index n : {Eigen::Index{4}, Eigen::Index{3}}) {
    CAPTURE(n);
    nn::GhostBatchNorm2d<5, 4> gbn{0.3f};
    nn::BatchNorm2d<5> bn{0.3f};
    Rng rng(43);
    B::fill_normal(bn.weight, 1.f, 0.3f, rng);
    B::fill_normal(bn.bias, 0.f, 0.3f, rng);
    gbn.weight = bn.weight;
    gbn.bias = bn.bias;
    Tensor x = random_image(5, 3, 4, n, 44), yg, yb, dxg, dxb;
    x.data.array() = x.data.array() * 3.f + 1.f;
    for (int step = 0; step < 2; ++step) {
      gbn.forward(x, yg, nn::Mode::train);
      bn.forward(x, yb, nn::Mode::train);
      CHECK(yg.data == yb.data);
      CHECK(gbn.running_mean == bn.running_mean);
      CHECK(gbn.running_var == bn.running_var);
    }
    Tensor dy = random_image(5, 3, 4, n, 45);
    gbn.backward(x, yg, dy, &dxg);
    bn.backward(x, yb, dy, &dxb);
    CHECK(dxg.data == dxb.data);
    CHECK(gbn.weight_grad == bn.weight_grad);
    CHECK(gbn.bias_grad == bn.bias_grad);
    gbn.forward(x, yg, nn::Mode::eval);
    bn.forward(x, yb, nn::Mode::eval);
    CHECK(yg.data == yb.data);
  }
}

TEST_CASE("GhostBatchNorm2d: gradients match finite differences across uneven ghost batches") {
  nn::GhostBatchNorm2d<3, 2> gbn;
  Rng rng(46);
  B::fill_normal(gbn.weight, 1.f, 0.3f, rng);
  B::fill_normal(gbn.bias, 0.f, 0.3f, rng);
  check_layer(gbn, random_image(3, 3, 2, 5, 47), 1e-3, 2e-3);  // chunks of 2, 2 and 1 samples
  // Without an input gradient, the parameter gradients are the same.
  Tensor x = random_image(3, 3, 2, 5, 48), y, dy = random_image(3, 3, 2, 5, 49), dx;
  gbn.forward(x, y, nn::Mode::train);
  gbn.backward(x, y, dy, &dx);
  const Mat wg = gbn.weight_grad;
  gbn.backward(x, y, dy, nullptr);
  CHECK(gbn.weight_grad == wg);
}

TEST_CASE("GhostBatchNorm2d: a drop-in for BatchNorm2d: traits, validation, errors and interchangeable state") {
  using G = nn::GhostBatchNorm2d<4>;
  static_assert(G::in_channels == nn::BatchNorm2d<4>::in_channels && G::out_channels == nn::BatchNorm2d<4>::out_channels);
  static_assert(G::in_features == nn::any && G::out_features == nn::any && G::has_parameters);
  static_assert(G::ghost_size == 32);
  CHECK(G::name() == "GhostBatchNorm2d<4,32>");
  CHECK_THROWS_AS(G{0.f}, config_error);
  CHECK_THROWS_AS(G{1.5f}, config_error);
  CHECK_THROWS_AS((G{0.1f, 0.f}), config_error);
  G g;
  CHECK(g.momentum() == 0.1f);
  CHECK_THROWS_AS(g.set_momentum(0.f), config_error);
  CHECK(g.output_shape(Shape(4, 3, 3)) == Shape(4, 3, 3));
  CHECK(g.output_shape(Shape(4)) == Shape(4));
  CHECK_THROWS_WITH_AS(g.output_shape(Shape(3, 2, 2)), doctest::Contains("GhostBatchNorm2d<4,32>: expects 4 channels"),
                       shape_error);
  Tensor x = random_image(4, 2, 2, 3, 50), y, dx;
  CHECK_THROWS_AS(g.backward(x, y, x, &dx), std::logic_error);  // no training-mode forward yet
  std::vector<std::string> names;
  g.parameter_names(names, "2.");
  CHECK(names == std::vector<std::string>{"2.GhostBatchNorm2d<4,32>.weight", "2.GhostBatchNorm2d<4,32>.bias"});

  // BatchNorm2d's state loads into GhostBatchNorm2d, and back.
  nn::BatchNorm2d<4> bn;
  Rng rng(51);
  B::fill_normal(bn.weight, 1.f, 0.3f, rng);
  bn.forward(random_image(4, 3, 3, 6, 52), y, nn::Mode::train);
  io::StateWriter w;
  bn.state(w);
  io::StateReader r(w.bytes(), "bn");
  g.state(r);
  r.finish();
  CHECK(g.weight == bn.weight);
  CHECK(g.running_mean == bn.running_mean);
  CHECK(g.running_var == bn.running_var);
  Tensor yg, yb;
  g.forward(x, yg, nn::Mode::eval);
  bn.forward(x, yb, nn::Mode::eval);
  CHECK(yg.data == yb.data);
  io::StateWriter w2;
  g.state(w2);
  CHECK(w2.bytes() == w.bytes());
  // A different momentum is a different configuration, as for BatchNorm2d.
  G other{0.2f};
  io::StateReader r2(w.bytes(), "bn");
  CHECK_THROWS_AS(other.state(r2), config_error);
}

// ---- compile-time surgery (methods/model/surgery.hpp) --------------------------------------
namespace {
using SNet = nn::Sequential<nn::Conv2d<1, 16, 3, 1, 1>, nn::BatchNorm2d<16>, nn::ReLU, nn::MaxPool2d<2>,
                            nn::Residual<nn::Sequential<nn::Conv2d<16, 32, 3, 2, 1>, nn::BatchNorm2d<32>>,
                                         nn::Conv2d<16, 32, 1, 2, 0>>,
                            nn::ReLU, nn::GlobalAvgPool, nn::Linear<32, 300>, nn::ReLU, nn::Linear<300, 10>>;
}  // namespace

TEST_CASE("surgery: each rule rewrites exactly the layers it names, inside residual blocks too") {
  using BP = methods::model_for<SNet, methods::BlurPool<>>;
  static_assert(std::is_same_v<
                BP::base_network,
                nn::Sequential<nn::Conv2d<1, 16, 3, 1, 1>, nn::BatchNorm2d<16>, nn::ReLU,
                               nn::Sequential<nn::MaxPool2d<2, 1>, nn::BlurPool2d<2>>,  // max, then blur + subsample
                               nn::Residual<nn::Sequential<nn::Sequential<nn::BlurPool2d<1>, nn::Conv2d<16, 32, 3, 2, 1>>,
                                                           nn::BatchNorm2d<32>>,
                                            nn::Sequential<nn::BlurPool2d<1>, nn::Conv2d<16, 32, 1, 2, 0>>>,
                               nn::ReLU, nn::GlobalAvgPool, nn::Linear<32, 300>, nn::ReLU, nn::Linear<300, 10>>>);
  // Stride-1 convolutions and those with fewer than MinChannels inputs are left alone.
  static_assert(std::is_same_v<methods::BlurPool<>::apply<nn::Conv2d<8, 16, 3, 2, 1>>, nn::Conv2d<8, 16, 3, 2, 1>>);
  static_assert(std::is_same_v<methods::BlurPool<false>::apply<nn::Conv2d<16, 16, 3, 2, 1>>, nn::Conv2d<16, 16, 3, 2, 1>>);

  using GB = methods::model_for<SNet, methods::GhostBatchNorm<8>>;
  static_assert(std::is_same_v<GB::base_network,
                               nn::Sequential<nn::Conv2d<1, 16, 3, 1, 1>, nn::GhostBatchNorm2d<16, 8>, nn::ReLU,
                                              nn::MaxPool2d<2>,
                                              nn::Residual<nn::Sequential<nn::Conv2d<16, 32, 3, 2, 1>,
                                                                          nn::GhostBatchNorm2d<32, 8>>,
                                                           nn::Conv2d<16, 32, 1, 2, 0>>,
                                              nn::ReLU, nn::GlobalAvgPool, nn::Linear<32, 300>, nn::ReLU,
                                              nn::Linear<300, 10>>>);

  // Factorize: only where it saves multiply-adds. Linear<32,300> has min 32 < 256; Linear<300,10>
  // too; with MinFeatures 8 and rank 4: 4*(32+300) < 32*300 and 4*(300+10) < 3000.
  using F0 = methods::model_for<SNet, methods::Factorize<>>;
  static_assert(std::is_same_v<F0::base_network, SNet>);
  using F = methods::model_for<SNet, methods::Factorize<8, 4, 16, 4>>;
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(std::declval<F&>().template layer<7>())>,
                               nn::Sequential<nn::Linear<32, 4>, nn::Linear<4, 300>>>);
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(std::declval<F&>().template layer<9>())>,
                               nn::Sequential<nn::Linear<300, 4>, nn::Linear<4, 10>>>);
  // Conv2d<16,32,3,...>: rank 16/4 = 4, 4*(16*9+32) < 16*32*9: factored; the 1x1 shortcut
  // 4*(16+32) < 16*32 too; Conv2d<1,16,...> has min 1 < 16: kept.
  static_assert(std::is_same_v<methods::Factorize<8, 4, 16, 4>::apply<nn::Conv2d<16, 32, 3, 2, 1>>,
                               nn::Sequential<nn::Conv2d<16, 4, 3, 2, 1>, nn::Conv2d<4, 32, 1, 1, 0>>>);
  static_assert(std::is_same_v<methods::Factorize<8, 4, 16, 4>::apply<nn::Conv2d<1, 16, 3, 1, 1>>,
                               nn::Conv2d<1, 16, 3, 1, 1>>);

  using SE = methods::SqueezeExcite<32, 8>;
  static_assert(std::is_same_v<SE::apply<nn::Conv2d<16, 32, 1, 2, 0>>,
                               nn::Sequential<nn::Conv2d<16, 32, 1, 2, 0>, nn::SqueezeExcite2d<32, 8>>>);
  static_assert(std::is_same_v<SE::apply<nn::Conv2d<1, 16, 3, 1, 1>>, nn::Conv2d<1, 16, 3, 1, 1>>);

  // Rules compose in order; non-surgery methods of a recipe are skipped; each rule visits the
  // network as the previous one left it, but not what it inserts itself.
  using Both = methods::model_for<SNet, methods::BlurPool<>, methods::EMA, SE>;
  static_assert(std::is_same_v<Both::surgery_applied, type_list<methods::BlurPool<>, SE>>);
  static_assert(std::is_same_v<std::remove_cvref_t<decltype(std::declval<Both&>().template layer<4>().shortcut())>,
                               nn::Sequential<nn::BlurPool2d<1>,
                                              nn::Sequential<nn::Conv2d<16, 32, 1, 2, 0>, nn::SqueezeExcite2d<32, 8>>>>);

  // At run time: the rewritten networks take the same images and give the same output shape.
  const Shape in(1, 28, 28);
  CHECK(BP{}.output_shape(in) == SNet{}.output_shape(in));
  CHECK(GB{}.output_shape(in) == Shape(10));
  CHECK(F{}.output_shape(in) == Shape(10));
  CHECK(Both{}.output_shape(in) == Shape(10));
  // Factorize lowers the parameter count; SqueezeExcite raises it by 2*32*8 + 32 + 8 per block.
  CHECK(F{}.parameter_count() < SNet{}.parameter_count());
  CHECK(methods::model_for<SNet, SE>{}.parameter_count() == SNet{}.parameter_count() + 2 * (2 * 32 * 8 + 32 + 8));
}

TEST_CASE("BlurPool surgery: max-pooled features change less when the image shifts by one pixel") {
  // Zhang 2019's claim, measured on random images: the relative change of the pooled output
  // under a one-pixel shift, averaged over 16 images, is smaller with the blur.
  nn::Sequential<nn::MaxPool2d<2>> plain;
  methods::model_for<nn::Sequential<nn::MaxPool2d<2>>, methods::BlurPool<>> blurred;
  auto x = gradcheck::random_image(4, 16, 17, 16, 31);
  // x shifted right by one pixel: column w of the shifted image is column w + 1 of a 17-wide one.
  cpu::eigen::tensor a, b;
  a.resize(Shape(4, 16, 16), 16);
  b.resize(Shape(4, 16, 16), 16);
  for (Eigen::Index n = 0; n < 16; ++n)
    for (int h = 0; h < 16; ++h)
      for (int w = 0; w < 16; ++w)
        for (int c = 0; c < 4; ++c) {
          a.data((h * 16 + w) * 4 + c, n) = x.data((h * 17 + w) * 4 + c, n);
          b.data((h * 16 + w) * 4 + c, n) = x.data((h * 17 + w + 1) * 4 + c, n);
        }
  auto change = [&](auto& net) {
    const cpu::eigen::matrix ya = net.forward(a, nn::Mode::eval).data;
    const cpu::eigen::matrix yb = net.forward(b, nn::Mode::eval).data;
    return (ya - yb).norm() / ya.norm();
  };
  const double with_max = change(plain), with_blur = change(blurred);
  CAPTURE(with_max);
  CAPTURE(with_blur);
  CHECK(with_blur < 0.7 * with_max);
}
