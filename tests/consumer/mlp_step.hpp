// A few SGD steps of a tiny MLP on backend B, for the consumer programs of the optional
// components (xtensor_main.cpp, thrust_main.cpp). Only the headers the step needs, to keep
// the package tests' compile time down. Returns 0 when the loss falls and stays finite.
#pragma once

#include <fasttrain/nn/activation.hpp>
#include <fasttrain/nn/linear.hpp>
#include <fasttrain/nn/loss.hpp>
#include <fasttrain/nn/sequential.hpp>
#include <fasttrain/optim/sgd.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

template <class B>
int mlp_steps(const char* program) {
  using namespace fasttrain;
  using Net = nn::Sequential<nn::Linear<4, 8>, nn::ReLU, nn::Linear<8, 3>>::rebind<B>;
  constexpr std::int64_t n = 12;
  // Sample j of class j % 3 is one-hot at feature j % 3, plus a small offset.
  std::vector<float> x(4 * n, 0.f);
  typename B::labels labels(n);
  for (std::int64_t j = 0; j < n; ++j) {
    labels[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(j % 3);
    x[static_cast<std::size_t>(4 * j + j % 3)] = 1.f;
    x[static_cast<std::size_t>(4 * j + 3)] = 0.1f * static_cast<float>(j % 4);
  }
  typename B::tensor input, grad;
  input.resize(Shape(4), n);
  B::from_host(x.data(), 4, n, input.data);

  Net net;
  net.reset_parameters(std::uint64_t{1});
  optim::BasicSGD<B> sgd({.lr = 0.5f, .momentum = 0.9f});
  nn::BasicSoftmaxCrossEntropy<B> loss;
  float first = 0.f, last = 0.f;
  for (int step = 0; step < 20; ++step) {
    last = loss.forward(net.forward(input, nn::Mode::train), {&labels, nullptr});
    if (step == 0) first = last;
    loss.backward(grad);
    net.backward(grad);
    sgd.step(net);
  }
  if (!std::isfinite(last) || !(last < 0.5f * first)) {
    std::fprintf(stderr, "%s: FAILED on %s: loss %g after 20 steps, %g at the first\n", program, B::name,
                 static_cast<double>(last), static_cast<double>(first));
    return 1;
  }
  std::printf("%s: OK (%s: loss %.4f -> %.4f)\n", program, B::name, static_cast<double>(first),
              static_cast<double>(last));
  return 0;
}
