// Layers and losses: finite-difference gradient checks for every layer and loss, and
// exact expectations for shapes, initialisation, dropout and numerical stability.
#include <doctest/doctest.h>

#include "gradcheck.hpp"

#include <cmath>
#include <fasttrain/nn/nn.hpp>

using namespace fasttrain;
using B = cpu::eigen;
using Mat = B::matrix;
using Tensor = B::tensor;

namespace {

Tensor random_tensor(std::int64_t rows, std::int64_t cols, std::uint64_t seed, float away_from_zero = 0.f) {
  Rng rng(seed);
  Tensor t;
  t.resize(Shape(rows), cols);
  B::fill_normal(t.data, 0.f, 1.f, rng);
  if (away_from_zero > 0)  // keep inputs off the kink of ReLU
    for (Eigen::Index i = 0; i < t.data.size(); ++i)
      if (std::abs(t.data(i)) < away_from_zero) t.data(i) = t.data(i) < 0 ? -away_from_zero : away_from_zero;
  return t;
}

using gradcheck::check_against_fd;
using gradcheck::check_layer;
using gradcheck::check_network_gradients;
using gradcheck::probe;


}  // namespace

TEST_CASE("Linear: forward is W x + b and gradients match finite differences") {
  nn::Linear<5, 3> fc;
  Rng rng(1);
  fc.reset_parameters(rng);
  B::fill_normal(fc.bias, 0.f, 1.f, rng);
  Tensor x = random_tensor(5, 4, 2);
  Tensor y;
  fc.forward(x, y, nn::Mode::train);
  Mat expect = (fc.weight * x.data).colwise() + fc.bias.col(0);
  CHECK((y.data - expect).cwiseAbs().maxCoeff() < 1e-5f);
  CHECK(y.shape == Shape(3));

  Mat R(3, 4);
  B::fill_normal(R, 0.f, 1.f, rng);
  Tensor dy{R, Shape(3)}, dx;
  fc.backward(x, y, dy, &dx);
  auto loss = [&] { return probe(fc, x, R); };
  Mat gw = fc.weight_grad, gb = fc.bias_grad, gx = dx.data;
  check_against_fd(fc.weight, gw, loss);
  check_against_fd(fc.bias, gb, loss);
  check_against_fd(x.data, gx, loss);
}

TEST_CASE("Linear: a sample of the wrong size is a shape_error naming the layer") {
  nn::Linear<4, 2> fc;
  Tensor x = random_tensor(5, 2, 3), y;
  CHECK_THROWS_AS(fc.forward(x, y, nn::Mode::train), shape_error);
  try {
    fc.forward(x, y, nn::Mode::train);
  } catch (const shape_error& e) {
    CHECK(std::string(e.what()).find("Linear<4,2>") != std::string::npos);
    CHECK(std::string(e.what()).find("has 5 values per sample") != std::string::npos);
    CHECK(std::string(e.what()).find("expected 4") != std::string::npos);
  }
  // A tensor whose declared shape lies about its data is caught too (never read past the data).
  Tensor liar = random_tensor(3, 2, 4);
  liar.shape = Shape(4);
  CHECK_THROWS_AS(fc.forward(liar, y, nn::Mode::train), shape_error);
}

TEST_CASE("activations: gradients match finite differences") {
  SUBCASE("ReLU") {
    nn::ReLU relu;
    check_layer(relu, random_tensor(6, 5, 4, 0.05f), 1e-3);
  }
  SUBCASE("GELU") {
    nn::GELU gelu;
    check_layer(gelu, random_tensor(6, 5, 5), 1e-3);
  }
  SUBCASE("Tanh") {
    nn::Tanh tanh;
    check_layer(tanh, random_tensor(6, 5, 6), 1e-3);
  }
}

TEST_CASE("activations: exact values") {
  Tensor x;
  x.resize(Shape(3), 1);
  x.data << -1.f, 0.f, 2.f;
  Tensor y;
  nn::ReLU{}.forward(x, y, nn::Mode::train);
  CHECK(y.data(0) == 0.f);
  CHECK(y.data(2) == 2.f);
  nn::GELU{}.forward(x, y, nn::Mode::train);
  CHECK(y.data(0) == doctest::Approx(-0.158655).epsilon(1e-5));  // -Phi(-1)
  CHECK(y.data(2) == doctest::Approx(1.954500).epsilon(1e-5));   // 2 Phi(2)
  nn::Tanh{}.forward(x, y, nn::Mode::train);
  CHECK(y.data(2) == doctest::Approx(std::tanh(2.0)));
}

TEST_CASE("Dropout: drops the right fraction, rescales, is the identity in eval mode") {
  nn::Dropout drop{0.25f};
  Rng rng(7);
  drop.reset_parameters(rng);
  Tensor x;
  x.resize(Shape(1000), 20);
  x.data.setOnes();
  Tensor y;
  drop.forward(x, y, nn::Mode::train);
  const double zero_fraction = (y.data.array() == 0.f).cast<double>().mean();
  CHECK(zero_fraction == doctest::Approx(0.25).epsilon(0.05));
  CHECK(((y.data.array() == 0.f) || (y.data.array() == 1.f / 0.75f)).all());
  CHECK(y.data.mean() == doctest::Approx(1.0).epsilon(0.02));  // expectation preserved

  // Backward passes the gradient through exactly the kept units, with the same scale.
  Tensor dy{Mat::Constant(1000, 20, 2.f), x.shape}, dx;
  drop.backward(x, y, dy, &dx);
  CHECK((dx.data.array() == 2.f * y.data.array()).all());

  Tensor ye;
  drop.forward(x, ye, nn::Mode::eval);
  CHECK((ye.data.array() == 1.f).all());
  CHECK_THROWS_AS(nn::Dropout{1.0f}, config_error);
  CHECK_THROWS_AS(nn::Dropout{-0.1f}, config_error);
}

TEST_CASE("Flatten: reshapes a sample and passes gradients through") {
  nn::Flatten flat;
  Tensor x;
  x.resize(Shape(2, 3, 4), 5);
  x.data.setRandom();
  Tensor y, dx;
  flat.forward(x, y, nn::Mode::train);
  CHECK(y.shape == Shape(24));
  CHECK(y.data == x.data);
  flat.backward(x, y, y, &dx);
  CHECK(dx.shape == Shape(2, 3, 4));
  CHECK(dx.data == x.data);
}

TEST_CASE("Sequential: static sizes, parameter visiting and a whole-network gradient check") {
  using Net = nn::Sequential<nn::Linear<6, 5>, nn::Tanh, nn::Linear<5, 4>, nn::GELU, nn::Linear<4, 3>>;
  static_assert(Net::in_features == 6);
  static_assert(Net::out_features == 3);
  static_assert(nn::Sequential<nn::ReLU, nn::Linear<7, 2>>::in_features == 7);
  Net net;
  net.reset_parameters(11);
  CHECK(net.parameter_count() == 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3);
  const auto names = net.parameter_names();
  REQUIRE(names.size() == 6);
  CHECK(names[0] == "0.Linear<6,5>.weight");
  CHECK(names[5] == "4.Linear<4,3>.bias");

  Tensor x = random_tensor(6, 4, 12);
  B::labels labels{0, 2, 1, 2};
  nn::SoftmaxCrossEntropy loss;
  check_network_gradients(net, x, loss, labels, 1e-2, 1e-3);
}

TEST_CASE("Sequential: the same seed gives the same weights, another seed different ones") {
  using Net = nn::Sequential<nn::Linear<8, 4>, nn::ReLU, nn::Linear<4, 2>>;
  Net a, b, c;
  a.reset_parameters(5);
  b.reset_parameters(5);
  c.reset_parameters(6);
  CHECK(a.layer<0>().weight == b.layer<0>().weight);
  CHECK(a.layer<2>().weight == b.layer<2>().weight);
  CHECK(a.layer<0>().weight != c.layer<0>().weight);
}

TEST_CASE("init: He and Xavier variances") {
  Mat w(400, 500);
  Rng rng(3);
  nn::initialize<B>(w, 500, 400, nn::Init::he_uniform, rng);
  CHECK(w.array().square().mean() == doctest::Approx(2.0 / 500).epsilon(0.03));
  CHECK(w.cwiseAbs().maxCoeff() <= std::sqrt(6.0 / 500) + 1e-6);
  nn::initialize<B>(w, 500, 400, nn::Init::he_normal, rng);
  CHECK(w.array().square().mean() == doctest::Approx(2.0 / 500).epsilon(0.03));
  nn::initialize<B>(w, 500, 400, nn::Init::xavier_uniform, rng);
  CHECK(w.array().square().mean() == doctest::Approx(2.0 / 900).epsilon(0.03));
  nn::initialize<B>(w, 500, 400, nn::Init::xavier_normal, rng);
  CHECK(w.array().square().mean() == doctest::Approx(2.0 / 900).epsilon(0.03));
}

TEST_CASE("SoftmaxCrossEntropy: value, stability and gradients for labels and soft targets") {
  nn::SoftmaxCrossEntropy ce;
  Tensor z;
  z.resize(Shape(4), 2);
  z.data.setZero();
  B::labels labels{1, 3};
  nn::Targets<B> t{&labels, nullptr};
  CHECK(ce.forward(z, t) == doctest::Approx(std::log(4.0)));

  // Huge logits: no overflow, exact answer.
  z.data << 1e4f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 1e4f;
  labels = {0, 1};
  const float l = ce.forward(z, t);
  CHECK(std::isfinite(l));
  CHECK(l == doctest::Approx(1e4 / 2));  // sample 0 exact (loss 0), sample 1 loses 1e4

  SUBCASE("labels") {
    Tensor x = random_tensor(5, 3, 21);
    B::labels lab{4, 0, 2};
    nn::Targets<B> tl{&lab, nullptr};
    ce.forward(x, tl);
    Tensor g;
    ce.backward(g);
    check_against_fd(x.data, g.data, [&] { return double(ce.forward(x, tl)); }, 1e-3);
  }
  SUBCASE("soft targets") {
    Tensor x = random_tensor(5, 3, 22);
    Mat soft = Mat::Constant(5, 3, 0.1f);
    soft(0, 0) = 0.6f;
    soft(2, 1) = 0.6f;
    soft(4, 2) = 0.6f;
    nn::Targets<B> ts{nullptr, &soft};
    ce.forward(x, ts);
    Tensor g;
    ce.backward(g);
    check_against_fd(x.data, g.data, [&] { return double(ce.forward(x, ts)); }, 1e-3);
  }
}

TEST_CASE("losses reject labels out of range and targets of the wrong shape") {
  nn::SoftmaxCrossEntropy ce;
  Tensor z = random_tensor(3, 2, 1);
  B::labels bad{0, 3};
  CHECK_THROWS_AS(ce.forward(z, {&bad, nullptr}), shape_error);
  B::labels short_labels{0};
  CHECK_THROWS_AS(ce.forward(z, {&short_labels, nullptr}), shape_error);
  Mat soft(2, 2);
  CHECK_THROWS_AS(ce.forward(z, {nullptr, &soft}), shape_error);
}

TEST_CASE("MSE: value and gradient") {
  nn::MSE mse;
  Tensor y;
  y.resize(Shape(2), 2);
  y.data << 1.f, 0.f, 0.f, 3.f;
  B::labels labels{0, 0};  // one-hot targets (1,0) and (1,0)
  CHECK(mse.forward(y, {&labels, nullptr}) == doctest::Approx((0 + 0 + 1 + 9) / 4.0));
  Tensor x = random_tensor(3, 4, 31);
  Mat soft = Mat::Random(3, 4);
  nn::Targets<B> ts{nullptr, &soft};
  mse.forward(x, ts);
  Tensor g;
  mse.backward(g);
  check_against_fd(x.data, g.data, [&] { return double(mse.forward(x, ts)); }, 1e-3);
}

TEST_CASE("ReLU propagates NaN instead of hiding it (so the Trainer can report it)") {
  Tensor x;
  x.resize(Shape(2), 1);
  x.data << std::nanf(""), -1.f;
  Tensor y;
  nn::ReLU{}.forward(x, y, nn::Mode::train);
  CHECK(std::isnan(y.data(0)));
  CHECK(y.data(1) == 0.f);
}

TEST_CASE("Sequential: a fresh network is initialised (seed 0), never all-zero") {
  nn::Sequential<nn::Linear<8, 4>, nn::ReLU, nn::Linear<4, 2>> a, b;
  CHECK(a.layer<0>().weight.cwiseAbs().maxCoeff() > 0.f);
  CHECK(a.layer<0>().weight == b.layer<0>().weight);
}

TEST_CASE("Sequential: backward needs a training-mode forward of the same batch") {
  nn::Sequential<nn::Linear<3, 2>> net;
  Tensor x = random_tensor(3, 4, 1), dy = random_tensor(2, 4, 2);
  CHECK_THROWS_AS(net.backward(dy), std::logic_error);  // no forward yet
  net.forward(x, nn::Mode::eval);
  CHECK_THROWS_AS(net.backward(dy), std::logic_error);  // eval forwards keep nothing
  net.forward(x, nn::Mode::train);
  Tensor wrong = random_tensor(2, 5, 3);
  CHECK_THROWS_AS(net.backward(wrong), shape_error);
  net.backward(dy);
  CHECK(net.layer<0>().weight_grad.cwiseAbs().maxCoeff() > 0.f);
}

TEST_CASE("Sequential: parameter-free layers first (Flatten, Dropout) still give exact gradients") {
  using Net = nn::Sequential<nn::Flatten, nn::Tanh, nn::Linear<6, 3>, nn::GELU, nn::Linear<3, 2>>;
  static_assert(Net::has_parameters);
  static_assert(!nn::Sequential<nn::Flatten, nn::ReLU>::has_parameters);
  Net net;
  Tensor x;
  x.resize(Shape(1, 2, 3), 4);
  Rng rng(8);
  B::fill_normal(x.data, 0.f, 1.f, rng);
  B::labels labels{0, 1, 1, 0};
  nn::MSE loss;
  check_network_gradients(net, x, loss, labels, 1e-3, 1e-3);
}
