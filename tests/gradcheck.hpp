// Finite-difference gradient checking shared by the layer tests.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <fasttrain/core/rng.hpp>
#include <fasttrain/nn/layer.hpp>
#include <fasttrain/nn/loss.hpp>
#include <fasttrain/tensor/eigen.hpp>
#include <vector>

namespace gradcheck {

using Mat = fasttrain::cpu::eigen::matrix;

/// n images {c, h, w} of N(0, 1) values drawn from `seed`.
inline fasttrain::cpu::eigen::tensor random_image(std::int64_t c, std::int64_t h, std::int64_t w, std::int64_t n,
                                                  std::uint64_t seed) {
  fasttrain::Rng rng(seed);
  fasttrain::cpu::eigen::tensor t;
  t.resize(fasttrain::Shape(c, h, w), n);
  fasttrain::cpu::eigen::fill_normal(t.data, 0.f, 1.f, rng);
  return t;
}

/// Central differences of `loss` with respect to every element of `v`, compared with the
/// analytic gradient `g` by the norm-wise relative error ||fd - g|| / (||fd|| + ||g||), so
/// that a gradient wrong by a fraction of a percent anywhere in the tensor fails. A
/// gradient that is truly zero (a conv bias followed by BatchNorm) is compared in absolute
/// terms, since finite differences give only noise there.
template <class F>
void check_against_fd(Mat& v, const Mat& g, F&& loss, double eps = 1e-2, double tol = 1e-3) {
  REQUIRE(v.size() == g.size());
  Eigen::MatrixXd fd(v.rows(), v.cols());
  for (Eigen::Index i = 0; i < v.size(); ++i) {
    const float saved = v(i);
    v(i) = saved + static_cast<float>(eps);
    const double up = loss();
    v(i) = saved - static_cast<float>(eps);
    const double down = loss();
    v(i) = saved;
    fd(i) = (up - down) / (2 * eps);
  }
  const Eigen::MatrixXd gd = g.cast<double>();
  const double err = (fd - gd).norm();
  const double rel = err / std::max(fd.norm() + gd.norm(), 1e-12);
  CHECK((rel < tol || err < 1e-4));
}

/// Probe loss L = sum(R .* f(x)), so that dL/dy = R.
template <class Layer>
double probe(Layer& layer, const fasttrain::cpu::eigen::tensor& x, const Mat& R, fasttrain::nn::Mode mode = fasttrain::nn::Mode::train) {
  fasttrain::cpu::eigen::tensor y;
  layer.forward(x, y, mode);
  return (y.data.cast<double>().array() * R.cast<double>().array()).sum();
}

/// Checks dL/dx and every parameter gradient of `layer` for the probe loss sum(R .* y).
template <class Layer>
void check_layer(Layer& layer, fasttrain::cpu::eigen::tensor x, double eps = 1e-2, double tol = 1e-3) {
  fasttrain::cpu::eigen::tensor y;
  layer.forward(x, y, fasttrain::nn::Mode::train);
  fasttrain::Rng rng(99);
  Mat R(y.data.rows(), y.data.cols());
  fasttrain::cpu::eigen::fill_normal(R, 0.f, 1.f, rng);
  fasttrain::cpu::eigen::tensor dy{R, y.shape}, dx;
  layer.backward(x, y, dy, &dx);
  REQUIRE(dx.data.rows() == x.data.rows());
  REQUIRE(dx.data.cols() == x.data.cols());
  CHECK(dx.shape == x.shape);
  std::vector<Mat> grads;
  layer.for_each_parameter([&](Mat&, Mat& g) { grads.push_back(g); });
  auto loss = [&] { return probe(layer, x, R); };
  const Mat gx = dx.data;
  check_against_fd(x.data, gx, loss, eps, tol);
  std::size_t i = 0;
  layer.for_each_parameter([&](Mat& p, Mat&) { check_against_fd(p, grads[i++], loss, eps, tol); });
}

/// Every parameter gradient of `net` under `loss` (with class `labels`) against central
/// differences.
template <class Net, class Loss>
void check_network_gradients(Net& net, const fasttrain::cpu::eigen::tensor& x, Loss& loss,
                             const fasttrain::cpu::eigen::labels& labels, double eps, double tol) {
  using B = fasttrain::cpu::eigen;
  fasttrain::nn::Targets<B> t{&labels, nullptr};
  auto eval_loss = [&] { return static_cast<double>(loss.forward(net.forward(x, fasttrain::nn::Mode::train), t)); };
  eval_loss();
  B::tensor g;
  loss.backward(g);
  net.backward(g);
  std::vector<Mat> grads;
  net.for_each_parameter([&](Mat&, Mat& gr) { grads.push_back(gr); });
  std::size_t i = 0;
  net.for_each_parameter([&](Mat& p, Mat&) { check_against_fd(p, grads[i++], eval_loss, eps, tol); });
}

}  // namespace gradcheck
