// The backend conformance suite: every layer, loss and optimizer, and a short MLP and CNN
// training, on cpu::xtensor and gpu::thrust give cpu::eigen's results from the same seed.
//
// Built twice: with g++ and THRUST_DEVICE_SYSTEM_OMP (so gpu::thrust runs on the CPU; the
// CI's test), and by benchmarks/gpu/run.sh with nvcc, where gpu::thrust is the GPU.
//
// Tolerances. The backends sum in different orders (BLAS against Eigen's GEMM, per-row
// sums, a gather in col2im), so results agree to float rounding, not bitwise:
//   single layer forward / backward / gradients:  max |a - b| <= 1e-4 (1 + max |b|)
//   training (MLP 60 steps, CNN 20 steps):        weights within 1e-3 (1 + max |w|),
//                                                 losses within 1e-3 relative
// The finite-difference checks run on every backend, cpu::eigen included.
#include <doctest/doctest.h>

#include <fasttrain/fasttrain.hpp>
#include <fasttrain/tensor/thrust.hpp>
#ifndef FASTTRAIN_NO_XTENSOR  // nvcc builds (scripts/nvcc-check.sh, benchmarks/gpu/run.sh) test gpu::thrust only
#include <fasttrain/tensor/xtensor.hpp>
#endif

#include <cmath>
#include <vector>

#include "fixtures.hpp"

using namespace fasttrain;
using Ref = cpu::eigen;
using Host = Eigen::MatrixXf;

#ifndef FASTTRAIN_NO_XTENSOR
#define FASTTRAIN_BACKENDS cpu::xtensor, gpu::thrust
#else
#define FASTTRAIN_BACKENDS gpu::thrust
#endif

namespace {

template <class B>
Host host(const typename B::matrix& m) {
  Host h(m.rows(), m.cols());
  B::to_host(m, h.data());
  return h;
}
template <class B>
typename B::matrix device(const Host& h) {
  typename B::matrix m;
  B::from_host(h.data(), h.rows(), h.cols(), m);
  return m;
}
template <class B>
typename B::tensor device(const Ref::tensor& t) {
  return {device<B>(t.data), t.shape};
}

/// max |a - b| <= tol (1 + max |b|), with the two sizes equal.
void check_close(const Host& a, const Host& b, double tol, const char* what) {
  INFO(std::string(what));
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  const double err = a.size() ? (a - b).cwiseAbs().maxCoeff() : 0.0;
  const double scale = 1.0 + (b.size() ? b.cwiseAbs().maxCoeff() : 0.0);
  CHECK(err <= tol * scale);
}

Ref::tensor image(std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t n, std::uint64_t seed) {
  Rng rng(seed);
  Ref::tensor t;
  t.resize(Shape(c, h, w), n);
  Ref::fill_normal(t.data, 0.f, 1.f, rng);
  return t;
}
Ref::tensor flat(std::int64_t f, std::int64_t n, std::uint64_t seed) {
  Ref::tensor t = image(1, 1, f, n, seed);
  t.shape = Shape(f);
  return t;
}

/// Layer L on cpu::eigen and L::rebind<B> from the same seed: forward in `mode`, backward
/// with the same output gradient; outputs, input gradients and parameter gradients agree.
template <class B, class L>
void conforms(L ref, const Ref::tensor& x, nn::Mode mode = nn::Mode::train, double tol = 1e-4) {
  INFO(L::name());
  typename L::template rebind<B> other = [&] {
    if constexpr (requires { ref.p(); }) return typename L::template rebind<B>(ref.p());  // Dropout
    else return typename L::template rebind<B>{};
  }();
  if constexpr (requires { ref.set_body(true, 1.f); }) {  // Residual: same body settings
    other.set_body(ref.body_active(), ref.body_scale());
  }
  Rng r1(7), r2(7);
  ref.reset_parameters(r1);
  other.reset_parameters(r2);
  Ref::tensor y;
  typename B::tensor bx = device<B>(x), by;
  ref.forward(x, y, mode);
  other.forward(bx, by, mode);
  CHECK(by.shape == y.shape);
  check_close(host<B>(by.data), y.data, tol, "forward");
  if (mode == nn::Mode::eval) return;
  Rng rr(99);
  Ref::tensor dy{Ref::matrix(y.data.rows(), y.data.cols()), y.shape}, dx;
  Ref::fill_normal(dy.data, 0.f, 1.f, rr);
  typename B::tensor bdy = device<B>(dy), bdx;
  ref.backward(x, y, dy, &dx);
  other.backward(bx, by, bdy, &bdx);
  CHECK(bdx.shape == dx.shape);
  check_close(host<B>(bdx.data), dx.data, tol, "input gradient");
  std::vector<Host> grads;
  ref.for_each_parameter([&](Ref::matrix&, Ref::matrix& g) { grads.push_back(g); });
  std::size_t i = 0;
  other.for_each_parameter([&](typename B::matrix&, typename B::matrix& g) {
    REQUIRE(i < grads.size());
    check_close(host<B>(g), grads[i++], tol, "parameter gradient");
  });
  CHECK(i == grads.size());
}

/// Central differences of L = sum(R .* layer(x)) on backend B itself (values copied to the
/// host, perturbed, copied back), against the backend's analytic gradients.
template <class B, class L>
void gradient_check(L& layer, Ref::tensor x_host, double tol = 2e-3) {
  using T = typename B::tensor;
  T x = device<B>(x_host), y, dx;
  Rng rng(3);
  layer.reset_parameters(rng);
  layer.forward(x, y, nn::Mode::train);
  Host R(y.data.rows(), y.data.cols());
  Rng rr(99);
  Ref::fill_normal(R, 0.f, 1.f, rr);
  T dy{device<B>(R), y.shape};
  layer.backward(x, y, dy, &dx);
  auto loss = [&] {
    T out;
    layer.forward(x, out, nn::Mode::train);
    return (host<B>(out.data).template cast<double>().array() * R.cast<double>().array()).sum();
  };
  auto check = [&](typename B::matrix& v, const Host& g) {
    Host h = host<B>(v);
    Eigen::MatrixXd fd(h.rows(), h.cols());
    const float eps = 1e-2f;
    for (Eigen::Index i = 0; i < h.size(); ++i) {
      const float saved = h(i);
      h(i) = saved + eps;
      B::from_host(h.data(), h.rows(), h.cols(), v);
      const double up = loss();
      h(i) = saved - eps;
      B::from_host(h.data(), h.rows(), h.cols(), v);
      const double down = loss();
      h(i) = saved;
      B::from_host(h.data(), h.rows(), h.cols(), v);
      fd(i) = (up - down) / (2.0 * eps);
    }
    const Eigen::MatrixXd gd = g.template cast<double>();
    const double err = (fd - gd).norm(), rel = err / std::max(fd.norm() + gd.norm(), 1e-12);
    CHECK((rel < tol || err < 1e-4));
  };
  const Host gx = host<B>(dx.data);
  check(x.data, gx);
  std::vector<Host> grads;
  layer.for_each_parameter([&](typename B::matrix&, typename B::matrix& g) { grads.push_back(host<B>(g)); });
  std::size_t i = 0;
  layer.for_each_parameter([&](typename B::matrix& p, typename B::matrix&) { check(p, grads[i++]); });
}

}  // namespace

TEST_CASE_TEMPLATE("backend conformance: element-wise and dense layers", B, FASTTRAIN_BACKENDS) {
  conforms<B>(nn::Linear<12, 5>{}, flat(12, 9, 1));
  conforms<B>(nn::Linear<12, 5>{}, flat(12, 9, 1), nn::Mode::eval);
  conforms<B>(nn::ReLU{}, flat(7, 5, 2));
  conforms<B>(nn::GELU{}, flat(7, 5, 3));
  conforms<B>(nn::Tanh{}, flat(7, 5, 4));
  conforms<B>(nn::Dropout{0.3f}, flat(40, 6, 5));  // the same mask: drawn on the host from the same Rng
  conforms<B>(nn::Flatten{}, image(2, 3, 3, 4, 6));
}

TEST_CASE_TEMPLATE("backend conformance: convolution, pooling, normalisation, residual", B, FASTTRAIN_BACKENDS) {
  conforms<B>(nn::Conv2d<3, 4, 3, 1, 1>{}, image(3, 6, 5, 3, 10));
  conforms<B>(nn::Conv2d<2, 3, 3, 2, 0>{}, image(2, 7, 7, 2, 11));  // stride 2, no padding
  conforms<B>(nn::Conv2d<1, 2, 5, 1, 2>{}, image(1, 6, 6, 2, 12));
  conforms<B>(nn::MaxPool2d<2>{}, image(3, 6, 4, 3, 13));
  conforms<B>(nn::MaxPool2d<3, 2>{}, image(2, 7, 7, 2, 14));  // overlapping windows
  conforms<B>(nn::AvgPool2d<2>{}, image(3, 6, 4, 3, 15));
  conforms<B>(nn::AvgPool2d<3, 1>{}, image(2, 5, 5, 2, 16));
  conforms<B>(nn::GlobalAvgPool{}, image(5, 4, 3, 3, 17));
  conforms<B>(nn::AdaptiveAvgPool2d<3, 3>{}, image(2, 7, 5, 2, 18));  // bins that share rows
  conforms<B>(nn::AdaptiveAvgPool2d<4, 4>{}, image(2, 3, 3, 2, 19));  // rows that repeat
  conforms<B>(nn::BatchNorm2d<3>{}, image(3, 4, 4, 5, 20));
  nn::BatchNorm2d<3> bn;  // eval mode after some running statistics
  Ref::tensor y;
  bn.forward(image(3, 4, 4, 5, 21), y, nn::Mode::train);
  conforms<B>(bn, image(3, 4, 4, 5, 22), nn::Mode::eval);
  // The layers the model-surgery methods put in (BlurPool, GhostBatchNorm, SqueezeExcite).
  conforms<B>(nn::BlurPool2d<2>{}, image(3, 7, 6, 2, 26));
  conforms<B>(nn::BlurPool2d<1>{}, image(2, 5, 5, 2, 27));
  conforms<B>(nn::GhostBatchNorm2d<3, 2>{}, image(3, 3, 3, 5, 28));  // chunks of 2, 2 and 1 samples
  conforms<B>(nn::SqueezeExcite2d<4, 2>{}, image(4, 3, 5, 3, 29));
  nn::GhostBatchNorm2d<3, 2> gbn;
  gbn.forward(image(3, 3, 3, 5, 30), y, nn::Mode::train);
  conforms<B>(gbn, image(3, 3, 3, 5, 31), nn::Mode::eval);
  using Block = nn::Residual<nn::Sequential<nn::Conv2d<2, 4, 3, 2, 1>, nn::BatchNorm2d<4>, nn::ReLU>,
                             nn::Sequential<nn::Conv2d<2, 4, 1, 2, 0>>>;
  conforms<B>(Block{}, image(2, 6, 6, 3, 23));
  Block scaled;
  scaled.set_body(true, 0.5f);
  conforms<B>(scaled, image(2, 6, 6, 3, 24));
  Block skipped;
  skipped.set_body(false, 1.f);
  conforms<B>(skipped, image(2, 6, 6, 3, 25));
}

TEST_CASE_TEMPLATE("backend gradient checks: finite differences on the backend itself", B, cpu::eigen,
                   FASTTRAIN_BACKENDS) {
  { typename nn::Linear<6, 4>::template rebind<B> l; gradient_check<B>(l, flat(6, 3, 30)); }
  { typename nn::GELU::template rebind<B> l; gradient_check<B>(l, flat(6, 3, 31)); }
  { typename nn::Conv2d<2, 3, 3, 2, 1>::template rebind<B> l; gradient_check<B>(l, image(2, 5, 5, 2, 32)); }
  { typename nn::MaxPool2d<2>::template rebind<B> l; gradient_check<B>(l, image(2, 4, 4, 2, 33)); }
  { typename nn::AvgPool2d<3, 1>::template rebind<B> l; gradient_check<B>(l, image(2, 4, 4, 2, 34)); }
  { typename nn::AdaptiveAvgPool2d<2, 2>::template rebind<B> l; gradient_check<B>(l, image(2, 5, 3, 2, 35)); }
  { typename nn::GlobalAvgPool::template rebind<B> l; gradient_check<B>(l, image(3, 3, 3, 2, 36)); }
  { typename nn::BatchNorm2d<2>::template rebind<B> l; gradient_check<B>(l, image(2, 3, 3, 4, 37)); }
  { typename nn::BlurPool2d<2>::template rebind<B> l; gradient_check<B>(l, image(2, 5, 4, 2, 38)); }
  { typename nn::GhostBatchNorm2d<2, 2>::template rebind<B> l; gradient_check<B>(l, image(2, 3, 3, 5, 39)); }
  { typename nn::SqueezeExcite2d<3, 2>::template rebind<B> l; gradient_check<B>(l, image(3, 3, 3, 2, 40)); }
}

TEST_CASE_TEMPLATE("backend conformance: losses", B, FASTTRAIN_BACKENDS) {
  const Ref::tensor z = flat(5, 7, 40);
  Ref::labels lab{0, 4, 2, 2, 1, 3, 0};
  Rng rng(41);
  Host soft(5, 7);
  Ref::fill_uniform(soft, 0.f, 1.f, rng);
  const typename B::matrix bsoft = device<B>(soft);
  const typename B::tensor bz = device<B>(z);
  {
    nn::SoftmaxCrossEntropy ref;
    nn::BasicSoftmaxCrossEntropy<B> other;
    for (int soft_targets = 0; soft_targets < 2; ++soft_targets) {
      nn::Targets<Ref> t{soft_targets ? nullptr : &lab, soft_targets ? &soft : nullptr};
      nn::Targets<B> bt{soft_targets ? nullptr : &lab, soft_targets ? &bsoft : nullptr};
      const float a = ref.forward(z, t), b = other.forward(bz, bt);
      CHECK(b == doctest::Approx(a).epsilon(1e-5));
      Ref::tensor g;
      typename B::tensor bg;
      ref.backward(g);
      other.backward(bg);
      check_close(host<B>(bg.data), g.data, 1e-5, "cross-entropy gradient");
      check_close(host<B>(other.probabilities()), ref.probabilities(), 1e-5, "probabilities");
    }
    Ref::labels bad{0, 5, 2, 2, 1, 3, 0};  // out of range: the same clear error
    CHECK_THROWS_AS(other.forward(bz, nn::Targets<B>{&bad, nullptr}), shape_error);
  }
  {
    nn::MSE ref;
    nn::BasicMSE<B> other;
    nn::Targets<Ref> t{&lab, nullptr};
    nn::Targets<B> bt{&lab, nullptr};
    CHECK(other.forward(bz, bt) == doctest::Approx(ref.forward(z, t)).epsilon(1e-5));
    Ref::tensor g;
    typename B::tensor bg;
    ref.backward(g);
    other.backward(bg);
    check_close(host<B>(bg.data), g.data, 1e-5, "MSE gradient");
  }
  Ref::labels pred, bpred;
  Ref::argmax_columns(z.data, pred);
  B::argmax_columns(bz.data, bpred);
  CHECK(pred == bpred);
  CHECK(B::sum(bz.data) == doctest::Approx(Ref::sum(z.data)).epsilon(1e-5));
  CHECK(B::squared_norm(bz.data) == doctest::Approx(Ref::squared_norm(z.data)).epsilon(1e-5));
  CHECK(B::max_abs(bz.data) == Ref::max_abs(z.data));
  CHECK(B::all_finite(bz.data));
  Host nan = z.data;
  nan(3, 2) = std::nanf("");
  CHECK_FALSE(B::all_finite(device<B>(nan)));
  nan(3, 2) = INFINITY;
  CHECK_FALSE(B::all_finite(device<B>(nan)));
}

namespace {
using MLP = nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>>;
using CNN = nn::Sequential<nn::Conv2d<1, 4, 3, 1, 1>, nn::ReLU, nn::MaxPool2d<2>, nn::Conv2d<4, 8, 3, 1, 1>,
                           nn::BatchNorm2d<8>, nn::ReLU, nn::AdaptiveAvgPool2d<2, 2>, nn::Linear<32, 3>>;

/// Images 1 x 8 x 8 whose class is the quadrant holding a bright square (3 classes).
data::Dataset squares(std::int64_t n, std::uint64_t seed) {
  data::Dataset ds;
  ds.features.setZero(64, n);
  ds.labels.resize(static_cast<std::size_t>(n));
  ds.sample_shape = Shape(1, 8, 8);
  ds.num_classes = 3;
  ds.name = "squares";
  Rng rng(seed);
  for (std::int64_t j = 0; j < n; ++j) {
    const auto c = static_cast<std::int32_t>(j % 3);
    ds.labels[static_cast<std::size_t>(j)] = c;
    const std::int64_t y0 = c == 2 ? 4 : 0, x0 = c == 1 ? 4 : 0;
    for (std::int64_t i = 0; i < 64; ++i) ds.features(i, j) = rng.normal(0.f, 0.3f);
    for (std::int64_t y = y0; y < y0 + 4; ++y)
      for (std::int64_t x = x0; x < x0 + 4; ++x) ds.features(y * 8 + x, j) += 1.f;
  }
  return ds;
}

/// The optimizer Opt (on cpu::eigen) as the same template on backend B.
template <class Opt>
struct on_backend;
template <template <class> class O, class B0>
struct on_backend<O<B0>> {
  template <class B>
  using type = O<B>;
};

/// Trains Net on backend B for `steps` batches of 16 (SGD with momentum or AdamW, cosine
/// schedule, gradient checks on); returns the weights and the result.
template <class Net, class Opt>
struct Trained {
  std::vector<Host> weights;
  Result result;
};
template <class B, class Net, class Opt, class... Methods>
Trained<Net, Opt> train(const data::Dataset& ds, std::int64_t steps, typename Opt::options_type o,
                        Methods... methods) {
  typename Net::template rebind<B> net;
  net.reset_parameters(std::uint64_t{5});
  using BOpt = typename on_backend<Opt>::template type<B>;
  Trainer trainer(net, BOpt(o), nn::BasicSoftmaxCrossEntropy<B>{}, std::move(methods)...);
  data::Loader loader(ds, {.batch_size = 16, .seed = 9, .prefetch = 0});
  FitOptions fo;
  fo.max_duration = Duration(static_cast<double>(steps), Unit::batch);
  Trained<Net, Opt> t;
  t.result = trainer.fit(loader, &ds, fo, schedule::cosine{});
  net.for_each_parameter([&](auto& p, auto&) { t.weights.push_back(host<B>(p)); });
  return t;
}
}  // namespace

TEST_CASE_TEMPLATE("backend conformance: optimizers (SGD, AdamW, LAMB, LARS) step identically", B, FASTTRAIN_BACKENDS) {
  using Net = nn::Sequential<nn::Linear<4, 6>>;
  const data::Dataset ds = fixtures::blobs(48, 50);
  const auto sgd_ref = train<Ref, Net, optim::SGD>(ds, 6, {.lr = 0.1f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-3f});
  const auto sgd = train<B, Net, optim::SGD>(ds, 6, {.lr = 0.1f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-3f});
  const auto adam_ref = train<Ref, Net, optim::AdamW>(ds, 6, {.lr = 0.01f, .weight_decay = 1e-2f});
  const auto adam = train<B, Net, optim::AdamW>(ds, 6, {.lr = 0.01f, .weight_decay = 1e-2f});
  const auto lamb_ref = train<Ref, Net, methods::LAMB>(ds, 6, {.lr = 0.01f, .weight_decay = 1e-2f});
  const auto lamb = train<B, Net, methods::LAMB>(ds, 6, {.lr = 0.01f, .weight_decay = 1e-2f});
  const auto lars_ref = train<Ref, Net, methods::LARS>(ds, 6, {.lr = 0.1f, .momentum = 0.9f});
  const auto lars = train<B, Net, methods::LARS>(ds, 6, {.lr = 0.1f, .momentum = 0.9f});
  for (std::size_t i = 0; i < sgd.weights.size(); ++i) {
    check_close(sgd.weights[i], sgd_ref.weights[i], 1e-5, "SGD weights");
    check_close(adam.weights[i], adam_ref.weights[i], 1e-5, "AdamW weights");
    check_close(lamb.weights[i], lamb_ref.weights[i], 1e-5, "LAMB weights");
    check_close(lars.weights[i], lars_ref.weights[i], 1e-5, "LARS weights");
  }
}

TEST_CASE_TEMPLATE("backend conformance: a short MLP and CNN training reach cpu::eigen's weights", B,
                   FASTTRAIN_BACKENDS) {
  const data::Dataset blobs = fixtures::blobs(240, 60);
  const auto mlp_ref = train<Ref, MLP, optim::SGD>(blobs, 60, {.lr = 0.1f, .momentum = 0.9f});
  const auto mlp = train<B, MLP, optim::SGD>(blobs, 60, {.lr = 0.1f, .momentum = 0.9f});
  REQUIRE(mlp.weights.size() == mlp_ref.weights.size());
  for (std::size_t i = 0; i < mlp.weights.size(); ++i) check_close(mlp.weights[i], mlp_ref.weights[i], 1e-3, "MLP weights");
  REQUIRE(!mlp.result.history.empty());
  CHECK(mlp.result.history.back().train_loss ==
        doctest::Approx(mlp_ref.result.history.back().train_loss).epsilon(1e-3));
  CHECK(mlp.result.test_accuracy == mlp_ref.result.test_accuracy);
  CHECK(mlp.result.test_accuracy > 0.9);  // it learned, on every backend

  const data::Dataset sq = squares(96, 61);
  // SGD, not AdamW: the conv bias before BatchNorm has a zero gradient up to rounding, which
  // Adam's normalisation turns into full-size steps of either sign (the optimizer test
  // compares AdamW on a network without that).
  const auto cnn_ref = train<Ref, CNN, optim::SGD>(sq, 20, {.lr = 0.05f, .momentum = 0.9f});
  const auto cnn = train<B, CNN, optim::SGD>(sq, 20, {.lr = 0.05f, .momentum = 0.9f});
  REQUIRE(cnn.weights.size() == cnn_ref.weights.size());
  for (std::size_t i = 0; i < cnn.weights.size(); ++i) check_close(cnn.weights[i], cnn_ref.weights[i], 1e-3, "CNN weights");
  CHECK(cnn.result.history.back().train_loss ==
        doctest::Approx(cnn_ref.result.history.back().train_loss).epsilon(1e-3));
  CHECK(cnn.result.test_accuracy == cnn_ref.result.test_accuracy);
  CHECK(cnn.result.test_accuracy > 0.9);
}

TEST_CASE_TEMPLATE("backend conformance: checkpoints hold host floats and load across backends", B,
                   FASTTRAIN_BACKENDS) {
  typename MLP::template rebind<B> net;
  net.reset_parameters(std::uint64_t{11});
  Trainer trainer(net, optim::BasicSGD<B>({.lr = 0.1f, .momentum = 0.9f}), nn::BasicSoftmaxCrossEntropy<B>{});
  const data::Dataset ds = fixtures::blobs(32, 70);
  data::Loader loader(ds, {.batch_size = 16, .seed = 1, .prefetch = 0});
  FitOptions fo;
  fo.max_duration = Duration(1, Unit::epoch);
  trainer.fit(loader, nullptr, fo);
  trainer.save_checkpoint("backend_conformance.ftc");
  MLP ref;  // written on B, read on cpu::eigen
  typename MLP::template rebind<B> again;
  io::load_model("backend_conformance.ftc", ref);
  io::load_model("backend_conformance.ftc", again);
  std::vector<Host> a, b, c;
  net.for_each_parameter([&](auto& p, auto&) { a.push_back(host<B>(p)); });
  ref.for_each_parameter([&](auto& p, auto&) { b.push_back(p); });
  again.for_each_parameter([&](auto& p, auto&) { c.push_back(host<B>(p)); });
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i] == b[i]);
    CHECK(a[i] == c[i]);
  }
  std::remove("backend_conformance.ftc");
}

TEST_CASE_TEMPLATE("backend conformance: the methods that run on every backend give cpu::eigen's weights", B,
                   FASTTRAIN_BACKENDS) {
  const data::Dataset blobs = fixtures::blobs(240, 80);
  const optim::SGDOptions sgd{.lr = 0.1f, .momentum = 0.9f};
  auto same = [&](const char* what, auto... m) {
    INFO(std::string(what));
    const auto ref = train<Ref, MLP, optim::SGD>(blobs, 60, sgd, m...);
    const auto other = train<B, MLP, optim::SGD>(blobs, 60, sgd, m...);
    REQUIRE(other.weights.size() == ref.weights.size());
    for (std::size_t i = 0; i < ref.weights.size(); ++i) check_close(other.weights[i], ref.weights[i], 1e-4, "weights");
    CHECK(other.result.test_accuracy == ref.result.test_accuracy);
  };
  same("EMA", methods::EMA({.half_life = Duration(5, Unit::batch)}));
  same("Lookahead", methods::Lookahead({.k = 5, .alpha = 0.5f}));
  same("SAM", methods::SAM({.rho = 0.05f}));
  same("SWA", methods::SWA({.start = Duration(0.5, Unit::dur), .update_every = Duration(1, Unit::batch)}));
  same("LayerFreezing", methods::LayerFreezing({.start = 0.3, .level = 0.5}));
  same("MagnitudePruning", methods::MagnitudePruning({.target_sparsity = 0.5f, .update_every = 5}));
  same("LabelSmoothing", methods::LabelSmoothing(0.1f));
  same("GradientClipping by norm", methods::GradientClipping::by_norm(0.5f));
  same("GradientClipping by value", methods::GradientClipping::by_value(0.05f));
  same("BatchSizeWarmup", methods::BatchSizeWarmup{});
  // SWA's BatchNorm statistics pass, on the CNN: statistics pulled to the host and back.
  const data::Dataset sq = squares(96, 81);
  const auto ref = train<Ref, CNN, optim::SGD>(sq, 20, sgd, methods::SWA({.start = Duration(0.5, Unit::dur)}));
  const auto other = train<B, CNN, optim::SGD>(sq, 20, sgd, methods::SWA({.start = Duration(0.5, Unit::dur)}));
  for (std::size_t i = 0; i < ref.weights.size(); ++i) check_close(other.weights[i], ref.weights[i], 1e-3, "SWA CNN weights");
}

TEST_CASE_TEMPLATE("backend conformance: the data methods give cpu::eigen's weights", B, FASTTRAIN_BACKENDS) {
  // Image methods on the CNN (8x8 squares, 3 epochs of 6 batches). On another backend they edit a
  // host copy of the batch (with_host_tensor), so the weights must agree to rounding.
  const data::Dataset sq = squares(96, 90);
  const optim::SGDOptions sgd{.lr = 0.05f, .momentum = 0.9f};
  auto same = [&](const char* what, auto... m) {
    INFO(std::string(what));
    const auto ref = train<Ref, CNN, optim::SGD>(sq, 18, sgd, m...);
    const auto other = train<B, CNN, optim::SGD>(sq, 18, sgd, m...);
    REQUIRE(other.weights.size() == ref.weights.size());
    for (std::size_t i = 0; i < ref.weights.size(); ++i) check_close(other.weights[i], ref.weights[i], 1e-3, "weights");
    CHECK(other.result.steps == ref.result.steps);
    CHECK(other.result.samples == ref.result.samples);
  };
  same("MixUp", methods::MixUp({.alpha = 0.4f, .seed = 1}));
  same("CutMix", methods::CutMix({.seed = 2}));
  same("CutOut", methods::CutOut({.length = 0.4f, .seed = 3}));
  same("RandAugment", methods::RandAugment({.num_ops = 1, .magnitude = 6.f, .seed = 4}));
  same("ProgressiveResizing", methods::ProgressiveResizing({.initial_scale = 0.5, .delay_fraction = 0.3,
                                                            .finetune_fraction = 0.3}));
  same("DataEchoing", methods::DataEchoing({.factor = 2}));
  same("SelectiveBackprop", methods::SelectiveBackprop({.start = 0.2f, .end = 0.9f, .keep = 0.5f, .seed = 5}));
  same("Curriculum", methods::Curriculum({.start = 0.5f, .full_at = 0.6f, .score_epoch = 1}));
  same("DataPruning EL2N", methods::DataPruning({.fraction = 0.25f, .score_epoch = 1}));
  same("DataPruning forgetting",
       methods::DataPruning({.fraction = 0.25f, .score = methods::ExampleScore::forgetting, .score_epoch = 1}));
  same("MixUp + LabelSmoothing", methods::MixUp({.seed = 6}), methods::LabelSmoothing(0.1f));
}

namespace {
/// The squares CNN rewritten by the model-surgery methods (BlurPool after the max-pool,
/// SqueezeExcite after each convolution, GhostBatchNorm for BatchNorm), trained on B.
template <class B>
std::vector<Host> train_surgered(const data::Dataset& ds) {
  using Net = methods::model_for<typename CNN::template rebind<B>, methods::BlurPool<true, true, 1>,
                                 methods::SqueezeExcite<4, 2>, methods::GhostBatchNorm<8>>;
  Net net;
  net.reset_parameters(std::uint64_t{5});
  Trainer trainer(net, optim::BasicSGD<B>({.lr = 0.05f, .momentum = 0.9f}), nn::BasicSoftmaxCrossEntropy<B>{},
                  methods::BlurPool<true, true, 1>{}, methods::SqueezeExcite<4, 2>{}, methods::GhostBatchNorm<8>{});
  data::Loader loader(ds, {.batch_size = 16, .seed = 9, .prefetch = 0});
  FitOptions fo;
  fo.max_duration = Duration(12, Unit::batch);
  trainer.fit(loader, &ds, fo);
  std::vector<Host> w;
  net.for_each_parameter([&](auto& p, auto&) { w.push_back(host<B>(p)); });
  return w;
}
}  // namespace

TEST_CASE_TEMPLATE("backend conformance: the model-surgery methods' networks train alike", B, FASTTRAIN_BACKENDS) {
  const data::Dataset sq = squares(96, 95);
  const auto ref = train_surgered<Ref>(sq);
  const auto other = train_surgered<B>(sq);
  REQUIRE(other.size() == ref.size());
  CHECK(ref.size() > 12);  // the SqueezeExcite layers' parameters are there
  for (std::size_t i = 0; i < ref.size(); ++i) check_close(other[i], ref[i], 1e-3, "weights");
}
