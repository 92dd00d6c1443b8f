// bench_mlp_overhead -- what the Trainer costs over a hand-written Eigen loop.
//
// Trains the 784-256-128-10 MLP on Fashion-MNIST (SGD + Nesterov, batch 128) twice per
// round: once with fasttrain::Trainer and once with a plain loop written directly in
// Eigen, from the same initial weights over the same batches (same loader, same seed).
// Rounds alternate the two sides; the median samples/s of each is reported, with
// their ratio (Trainer / hand-written; 1.0 = no overhead). Evaluation is excluded on
// both sides. Also prints the largest weight difference between the two sides after
// the first round, which shows they compute the same thing: after one epoch it is at
// the level of float rounding (~1e-7); over longer runs such rounding differences grow
// (SGD on a ReLU network amplifies them), so compare it at --epochs 1.
//
//   bench_mlp_overhead [--epochs 1] [--rounds 9] [--threads 2] [--batch 128] [--seed 1] [--data DIR]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fasttrain/core/cli.hpp>
#include <fasttrain/fasttrain.hpp>
#include <iostream>
#include <vector>

using namespace fasttrain;
using Mat = Eigen::MatrixXf;

using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 128>, nn::ReLU, nn::Linear<128, 10>>;

namespace {

constexpr float kLr = 0.05f, kMomentum = 0.9f;

// The hand-written loop: forward, softmax cross-entropy, backward and Nesterov SGD,
// written the way an Eigen user would write them for this exact network.
struct HandMLP {
  Mat W1, b1, W2, b2, W3, b3;                  // parameters
  Mat gW1, gb1, gW2, gb2, gW3, gb3;            // gradients
  Mat vW1, vb1, vW2, vb2, vW3, vb3;            // momentum
  Mat h1, h2, z, p, dz, dh2, dh1;              // activations and their gradients

  explicit HandMLP(MLP& init) {
    W1 = init.layer<0>().weight, b1 = init.layer<0>().bias;
    W2 = init.layer<2>().weight, b2 = init.layer<2>().bias;
    W3 = init.layer<4>().weight, b3 = init.layer<4>().bias;
    vW1 = Mat::Zero(W1.rows(), W1.cols()), vb1 = Mat::Zero(b1.rows(), 1);
    vW2 = Mat::Zero(W2.rows(), W2.cols()), vb2 = Mat::Zero(b2.rows(), 1);
    vW3 = Mat::Zero(W3.rows(), W3.cols()), vb3 = Mat::Zero(b3.rows(), 1);
  }

  static void nesterov(Mat& w, const Mat& g, Mat& v, float lr) {
    v = kMomentum * v + g;
    w -= lr * (g + kMomentum * v);
  }

  float step(const Mat& x, const std::vector<std::int32_t>& y, float lr) {
    const auto n = x.cols();
    h1.noalias() = W1 * x;
    h1.colwise() += b1.col(0);
    h1 = h1.cwiseMax(0.f);
    h2.noalias() = W2 * h1;
    h2.colwise() += b2.col(0);
    h2 = h2.cwiseMax(0.f);
    z.noalias() = W3 * h2;
    z.colwise() += b3.col(0);
    // softmax cross-entropy
    p.resize(z.rows(), n);
    double loss = 0;
    for (Eigen::Index j = 0; j < n; ++j) {
      const float mx = z.col(j).maxCoeff();
      p.col(j) = (z.col(j).array() - mx).exp();
      const float s = p.col(j).sum();
      p.col(j) /= s;
      loss -= z(y[j], j) - mx - std::log(s);
    }
    dz = p;
    for (Eigen::Index j = 0; j < n; ++j) dz(y[j], j) -= 1.f;
    dz *= 1.f / static_cast<float>(n);
    // backward
    gW3.noalias() = dz * h2.transpose();
    gb3 = dz.rowwise().sum();
    dh2.noalias() = W3.transpose() * dz;
    dh2 = (h2.array() > 0.f).select(dh2, 0.f);
    gW2.noalias() = dh2 * h1.transpose();
    gb2 = dh2.rowwise().sum();
    dh1.noalias() = W2.transpose() * dh2;
    dh1 = (h1.array() > 0.f).select(dh1, 0.f);
    gW1.noalias() = dh1 * x.transpose();
    gb1 = dh1.rowwise().sum();
    nesterov(W1, gW1, vW1, lr), nesterov(b1, gb1, vb1, lr);
    nesterov(W2, gW2, vW2, lr), nesterov(b2, gb2, vb2, lr);
    nesterov(W3, gW3, vW3, lr), nesterov(b3, gb3, vb3, lr);
    return static_cast<float>(loss / n);
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) try {
  cli::Args args("bench_mlp_overhead", "Trainer vs a hand-written Eigen loop on the Fashion-MNIST MLP.");
  auto epochs = args.add<double>("epochs", 1, "epochs per side per round");
  auto rounds = args.add<int>("rounds", 9, "alternating rounds (median reported)");
  auto threads = args.add<int>("threads", 2, "threads for the matrix products");
  auto batch = args.add<std::int64_t>("batch", 128, "minibatch size");
  auto seed = args.add<std::uint64_t>("seed", 1, "seed");
  auto data_dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
  args.parse(argc, argv);
  detail::require(*rounds >= 1, "--rounds must be >= 1");
  detail::require(*epochs > 0, "--epochs must be positive");

  set_threads(*threads);
  auto [train, test] = data::fashion_mnist(*data_dir);
  const auto norm = data::Normalizer::fit(train);
  norm.apply(train);

  std::vector<double> hand_sps, trainer_sps;
  double max_diff = -1;
  for (int r = 0; r < *rounds; ++r) {
    MLP model;
    model.reset_parameters(*seed);

    // Hand-written loop.
    HandMLP hand(model);
    {
      data::Loader loader(train, {.batch_size = *batch, .shuffle = true, .seed = *seed, .prefetch = 2});
      const auto steps = static_cast<std::int64_t>(std::ceil(*epochs * static_cast<double>(loader.batches_per_epoch())));
      data::Batch<> b;
      std::int64_t done = 0, samples = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (std::int64_t e = 0; done < steps; ++e) {
        loader.start_epoch(e);
        while (done < steps && loader.next(b)) {
          hand.step(b.inputs.data, b.labels, kLr);
          samples += b.size();
          ++done;
        }
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      hand_sps.push_back(static_cast<double>(samples) / s);
    }

    // The Trainer, same start, same batches.
    {
      data::Loader loader(train, {.batch_size = *batch, .shuffle = true, .seed = *seed, .prefetch = 2});
      Trainer trainer{model, optim::SGD{{.lr = kLr, .momentum = kMomentum, .nesterov = true}},
                      nn::SoftmaxCrossEntropy{}};
      FitOptions opt;
      opt.max_duration = Duration{*epochs, Unit::epoch};
      opt.progress = ProgressMode::never;
      const Result res = trainer.fit(loader, nullptr, opt);
      trainer_sps.push_back(res.samples_per_second);
    }
    if (r == 0) max_diff = (model.layer<0>().weight - hand.W1).cwiseAbs().maxCoeff();
    std::fprintf(stderr, "round %d: hand-written %.0f samples/s, Trainer %.0f samples/s\n", r + 1,
                 hand_sps.back(), trainer_sps.back());
  }

  const double h = median(hand_sps), t = median(trainer_sps);
  std::printf("hand-written Eigen loop : %10.0f samples/s (median of %d)\n", h, *rounds);
  std::printf("fasttrain::Trainer      : %10.0f samples/s (median of %d)\n", t, *rounds);
  std::printf("ratio Trainer / hand    : %10.3f\n", t / h);
  std::printf("max |W1 difference| after round 1: %.3g\n", max_diff);
  json::object o;
  o.add("name", "bench_mlp_overhead")
      .add("samples_per_second", t)
      .add("hand_samples_per_second", h)
      .add("ratio", t / h)
      .add("max_weight_difference", max_diff)
      .add("threads", *threads)
      .add("batch", static_cast<std::int64_t>(*batch))
      .add("epochs", *epochs)
      .add("rounds", *rounds);
  std::cout << o.str() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_mlp_overhead: error: %s\n", e.what());
  return 1;
}
