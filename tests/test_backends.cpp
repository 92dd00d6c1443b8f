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
#include <fasttrain/data/device_loader.hpp>
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

TEST_CASE_TEMPLATE("backend primitives: row sums in one or several passes, non-finite gradients found", B,
                   FASTTRAIN_BACKENDS) {
  // 7 x 20 is summed in one pass, 3 x 5000 in three (runs of 64 columns, of 64 runs, then
  // the rest), 64 x 100003 in four.
  for (auto [r, c] : {std::pair<std::int64_t, std::int64_t>{3, 5000}, {7, 20}, {64, 100003}, {5, 64}, {5, 65}}) {
    INFO(r << " x " << c);
    Rng rng(static_cast<std::uint64_t>(r * c));
    Host h(r, c);
    Ref::fill_normal(h, 0.f, 1.f, rng);
    typename B::matrix out;
    B::row_sums(device<B>(h), out);
    check_close(host<B>(out), h.rowwise().sum(), 1e-5, "row sums");
  }

  Host a = Host::Ones(4, 3), b = Host::Ones(2, 300), c = Host::Ones(5, 1);
  const auto da = device<B>(a), db = device<B>(b);
  auto views = [](const auto&... m) {
    return std::vector<typename B::const_view_type>{B::view(static_cast<const float*>(m.data()), m.rows(), m.cols())...};
  };
  CHECK(B::first_nonfinite(views(da, db, device<B>(c))) == -1);
  CHECK(B::first_nonfinite({}) == -1);
  b(1, 250) = std::numeric_limits<float>::quiet_NaN();
  c(4, 0) = std::numeric_limits<float>::infinity();
  CHECK(B::first_nonfinite(views(da, device<B>(b), device<B>(c))) == 1);
  CHECK(B::first_nonfinite(views(da, db, device<B>(c))) == 2);
  c(4, 0) = -std::numeric_limits<float>::infinity();
  CHECK(B::first_nonfinite(views(device<B>(c))) == 0);
}

TEST_CASE_TEMPLATE("backend conformance: a convolution over the whole batch equals one over small chunks", B,
                   FASTTRAIN_BACKENDS) {
  using Conv = typename nn::Conv2d<3, 5, 3, 2, 1>::template rebind<B>;
  const auto x = device<B>(image(3, 9, 7, 11, 50));
  Conv whole, chunked;
  Rng r1(3), r2(3);
  whole.reset_parameters(r1);
  chunked.reset_parameters(r2);
  chunked.set_chunk_bytes(1);  // one sample per chunk
  typename B::tensor y1, y2, dx1, dx2;
  whole.forward(x, y1, nn::Mode::train);
  chunked.forward(x, y2, nn::Mode::train);
  check_close(host<B>(y2.data), host<B>(y1.data), 1e-5, "outputs");
  whole.backward(x, y1, y1, &dx1);
  chunked.backward(x, y2, y2, &dx2);
  check_close(host<B>(dx2.data), host<B>(dx1.data), 1e-5, "input gradients");
  check_close(host<B>(chunked.weight_grad), host<B>(whole.weight_grad), 1e-5, "weight gradients");
  check_close(host<B>(chunked.bias_grad), host<B>(whole.bias_grad), 1e-5, "bias gradients");
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

TEST_CASE_TEMPLATE("data::DeviceLoader draws data::Loader's batches, gathered on the device", B, FASTTRAIN_BACKENDS) {
  const data::Dataset sq = squares(50, 96);
  const data::LoaderOptions opt{.batch_size = 7, .seed = 4, .prefetch = 0};
  data::Loader host_loader(sq, opt);
  data::DeviceLoader<B> dev_loader(sq, opt);
  CHECK(dev_loader.device_bytes() == 50 * 64 * 4);
  CHECK(dev_loader.batches_per_epoch() == host_loader.batches_per_epoch());
  auto same_epoch = [&](const char* what, std::int64_t first = 0) {
    INFO(std::string(what));
    data::Batch<> h;
    data::Batch<B> d;
    std::int64_t batches = 0;
    while (host_loader.next(h)) {
      REQUIRE(dev_loader.next(d));
      CHECK(host<B>(d.inputs.data) == h.inputs.data);
      CHECK(d.inputs.shape == h.inputs.shape);
      CHECK(d.labels == h.labels);
      CHECK(d.indices == h.indices);
      ++batches;
    }
    CHECK_FALSE(dev_loader.next(d));
    CHECK(first + batches == dev_loader.batches_in_epoch());
  };
  host_loader.start_epoch(0);
  dev_loader.start_epoch(0);
  same_epoch("epoch 0");
  host_loader.set_batch_size(5);
  dev_loader.set_batch_size(5);
  host_loader.start_epoch(3, 2);  // resumed in mid-epoch, batch size set by a method
  dev_loader.start_epoch(3, 2);
  same_epoch("epoch 3 from batch 2, batches of 5", 2);
  std::vector<std::int64_t> order{49, 0, 7, 7, 12, 3, 30, 31, 2};  // an order given by a method
  host_loader.start_epoch(4, 0, order);
  dev_loader.start_epoch(4, 0, order);
  same_epoch("a given order");

  // Training from it gives the weights of training from a Loader.
  auto trained = [&](auto& loader) {
    typename CNN::template rebind<B> net;
    net.reset_parameters(std::uint64_t{5});
    Trainer trainer(net, optim::BasicSGD<B>({.lr = 0.05f, .momentum = 0.9f}), nn::BasicSoftmaxCrossEntropy<B>{});
    FitOptions fo;
    fo.max_duration = Duration(2, Unit::epoch);
    trainer.fit(loader, nullptr, fo);
    std::vector<Host> w;
    net.for_each_parameter([&](auto& p, auto&) { w.push_back(host<B>(p)); });
    return w;
  };
  data::Loader l1(sq, opt);
  data::DeviceLoader<B> l2(sq, opt);
  const auto w1 = trained(l1), w2 = trained(l2);
  REQUIRE(w1.size() == w2.size());
  for (std::size_t i = 0; i < w1.size(); ++i) CHECK(w1[i] == w2[i]);
}

TEST_CASE_TEMPLATE("data::DeviceLoader refuses a training set larger than its memory, and transforms", B,
                   FASTTRAIN_BACKENDS) {
  const data::Dataset sq = squares(50, 97);  // 12,800 bytes of features
  CHECK_THROWS_WITH_AS(data::DeviceLoader<B>(sq, {}, 12'000),
                       doctest::Contains("the training set needs 12800 bytes (0.0 MiB) on"), config_error);
  try {
    data::DeviceLoader<B> l(sq, {}, 12'000);
  } catch (const config_error& e) {
    const std::string m = e.what();
    CHECK(m.find("data::DeviceLoader(squares)") != std::string::npos);
    CHECK(m.find("50 samples of 64 floats") != std::string::npos);
    CHECK(m.find("use data::Loader") != std::string::npos);
  }
  CHECK_NOTHROW(data::DeviceLoader<B>(sq, {}, 12'800));
  data::LoaderOptions with_transform;
  with_transform.transform = [](data::Batch<>&, Rng&) {};
  CHECK_THROWS_WITH_AS(data::DeviceLoader<B>(sq, with_transform), doctest::Contains("transform edits host batches"),
                       config_error);
  CHECK_THROWS_AS(data::DeviceLoader<B>(sq, {}, -1), config_error);
}

TEST_CASE("gpu::thrust: 16-bit products round their inputs and sum in fp32") {
  using B = gpu::thrust;
  CHECK(B::round_to_bf16(1.f + 0x1p-8f) == 1.f);                 // a tie: to the even neighbour
  CHECK(B::round_to_bf16(1.f + 3 * 0x1p-8f) == 1.f + 0x1p-6f);
  CHECK(std::isinf(B::round_to_bf16(std::numeric_limits<float>::max())));  // rounds up past bf16's largest
  CHECK(B::round_to_bf16(-0x1.fep+127f) == -0x1.fep+127f);                   // bf16's largest, exact
  CHECK(B::round_to_fp16(1.f + 0x1p-11f) == 1.f);
  CHECK(B::round_to_fp16(1.f + 3 * 0x1p-11f) == 1.f + 0x1p-9f);
  CHECK(B::round_to_fp16(65504.f) == 65504.f);
  CHECK(std::isinf(B::round_to_fp16(70000.f)));
  CHECK(B::round_to_fp16(-3e-8f) == -0x1p-24f);                  // subnormal
  CHECK(B::round_to_fp16(2e-8f) == 0.f);                         // underflow
  CHECK(std::isnan(B::round_to_fp16(std::numeric_limits<float>::quiet_NaN())));

  Rng rng(7);
  Host a(48, 200), b(200, 40);
  Ref::fill_normal(a, 0.f, 1.f, rng);
  Ref::fill_normal(b, 0.f, 1.f, rng);
  const auto da = device<B>(a), db = device<B>(b);
  typename B::matrix c;
  for (auto p : {B::precision::bf16, B::precision::fp16}) {
    auto r = [p](float v) { return p == B::precision::bf16 ? B::round_to_bf16(v) : B::round_to_fp16(v); };
    const Host expect = a.unaryExpr(r) * b.unaryExpr(r);
    B::set_gemm_precision(p);
    B::gemm(false, false, 1.f, da, db, 0.f, c);
    B::set_gemm_precision(B::precision::fp32);
    const Host got = host<B>(c), exact = a * b;
    INFO("max |16-bit - fp32| = " << (got - exact).cwiseAbs().maxCoeff());
#if FASTTRAIN_THRUST_CUDA
    // cuBLAS's FAST_16BF / _16F modes allow, and do not force, 16-bit products: it may run a
    // shape in fp32. Either way the result is within the 16-bit rounding of the fp32 product.
    check_close(got, exact, 2e-2, "16-bit product");
#else
    check_close(got, expect, 1e-5, "16-bit product");
    CHECK((got - exact).cwiseAbs().maxCoeff() > 1e-4);  // and not the fp32 product
#endif
  }
}

TEST_CASE("methods::MixedPrecision: bf16 trains like fp32 to rounding, fp16 scales the loss and skips overflows") {
  using B = gpu::thrust;
  const data::Dataset blobs = fixtures::blobs(240, 98);
  const optim::SGDOptions sgd{.lr = 0.1f, .momentum = 0.9f};
  const auto fp32 = train<B, MLP, optim::SGD>(blobs, 60, sgd);
  const auto bf16 = train<B, MLP, optim::SGD>(blobs, 60, sgd, methods::MixedPrecision{});
  CHECK(B::gemm_precision() == B::precision::fp32);  // restored at fit_end
  double diff = 0;
  for (std::size_t i = 0; i < fp32.weights.size(); ++i) {
    check_close(bf16.weights[i], fp32.weights[i], 0.05, "bf16 weights near fp32's");
    diff = std::max(diff, static_cast<double>((bf16.weights[i] - fp32.weights[i]).cwiseAbs().maxCoeff()));
  }
#if !FASTTRAIN_THRUST_CUDA  // cuBLAS may run this MLP's small products in fp32 (see above)
  CHECK(diff > 1e-5);       // the products were rounded
#endif
  CHECK(bf16.result.test_accuracy > 0.9);

  // fp16 from a scale of 2^24: the scaled output gradient overflows fp16 in the backward
  // products, so steps are skipped and the scale halved until it fits; then it trains.
  typename MLP::template rebind<B> net;
  net.reset_parameters(std::uint64_t{5});
  methods::MixedPrecision mp({.precision = methods::Precision::fp16, .initial_scale = 16777216.f, .growth_interval = 20});
  Trainer trainer(net, optim::BasicSGD<B>(sgd), nn::BasicSoftmaxCrossEntropy<B>{}, mp);
  data::Loader loader(blobs, {.batch_size = 16, .seed = 9, .prefetch = 0});
  FitOptions fo;
  fo.max_duration = Duration(60, Unit::batch);
  const Result r = trainer.fit(loader, &blobs, fo);
  const auto& m = trainer.method<methods::MixedPrecision>();
#if !FASTTRAIN_THRUST_CUDA  // products that cuBLAS runs in fp32 do not overflow
  CHECK(m.skipped_steps() >= 1);
  CHECK(m.scale() < 16777216.f);
#endif
  CHECK(m.scale() >= 1.f);
  CHECK(r.test_accuracy > 0.9);
  CHECK(std::isfinite(r.final_train_loss));
  CHECK_THROWS_AS(methods::MixedPrecision({.initial_scale = 0.5f}), config_error);
  CHECK_THROWS_AS(methods::MixedPrecision({.growth_interval = 0}), config_error);
}
