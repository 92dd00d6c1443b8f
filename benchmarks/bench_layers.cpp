// bench_layers -- where a training step of the Fashion-MNIST CNN (and MLP) spends its time,
// layer by layer, against the machine's GEMM peak.
//
// First measures Eigen's single-precision GEMM on large square matrices with the chosen
// thread count (the practical peak of this machine for these layers). Then, for a batch
// of `--batch` random 28x28 images, times each layer's forward and backward (median of
// --reps repetitions) and prints its FLOPs (multiply-add = 2), achieved GFLOP/s and the
// fraction of the GEMM peak. Ends with one JSON line.
//
//   bench_layers [--threads 2] [--batch 128] [--reps 7] [--model cnn|mlp]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fasttrain/core/cli.hpp>
#include <fasttrain/fasttrain.hpp>
#include <iostream>
#include <string>
#include <vector>

using namespace fasttrain;
using B = cpu::eigen;
using clk = std::chrono::steady_clock;

using CNN = nn::Sequential<nn::Conv2d<1, 32, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>, nn::Conv2d<32, 64, 5, 1, 2>,
                           nn::ReLU, nn::MaxPool2d<2>, nn::Linear<3136, 1024>, nn::ReLU, nn::Linear<1024, 10>>;
using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 128>, nn::ReLU, nn::Linear<128, 10>>;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_median(int reps, F&& f) {
  std::vector<double> t;
  f();  // warm-up: first-touch allocations
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clk::now();
    f();
    t.push_back(std::chrono::duration<double>(clk::now() - t0).count());
  }
  return median(t);
}

// The best of `reps` runs after three warm-up runs: the first products of a process run
// slower (page faults, clock ramp-up), and the peak is the rate the machine can sustain.
double gemm_peak(int reps) {
  const Eigen::Index n = 1024;
  B::matrix a = B::matrix::Random(n, n), b = B::matrix::Random(n, n), c(n, n);
  for (int w = 0; w < 3; ++w) c.noalias() = a * b;
  double best = 1e30;
  for (int r = 0; r < std::max(reps, 5); ++r) {
    const auto t0 = clk::now();
    c.noalias() = a * b;
    best = std::min(best, std::chrono::duration<double>(clk::now() - t0).count());
  }
  return 2.0 * n * n * n / best / 1e9;
}

// Forward + backward time and GFLOP/s of one convolution on random input of `in` shape.
template <class Conv>
void conv_row(const char* label, Conv& conv, const Shape& in, std::int64_t batch, int reps, bool input_grad) {
  Rng rng(2);
  B::tensor x, y, dx;
  x.resize(in, batch);
  B::fill_normal(x.data, 0.f, 1.f, rng);
  const double s = time_median(reps, [&] {
    conv.forward(x, y, nn::Mode::train);
    conv.backward(x, y, y, input_grad ? &dx : nullptr);
  });
  const double flops = (input_grad ? 6.0 : 4.0) * static_cast<double>(conv.macs(in)) * static_cast<double>(batch);
  std::printf("  %-34s %8.2f ms  %6.1f GFLOP/s\n", label, s * 1e3, flops / s / 1e9);
}

// Forward multiply-adds per sample of a layer given its input shape (0 for layers without GEMMs).
template <class L>
double layer_macs(const L& layer, const Shape& in) {
  if constexpr (requires { layer.macs(in); }) return static_cast<double>(layer.macs(in));
  else if constexpr (requires { L::in_features; L::out_features; L::has_parameters; })
    return L::has_parameters && L::in_features > 0 && L::out_features > 0
               ? static_cast<double>(L::in_features * L::out_features)
               : 0.0;
  else return 0.0;
}

struct Row {
  std::string name;
  double fwd_s, bwd_s, flops;
};

template <class Net>
std::vector<Row> time_layers(Net& net, const Shape& in_shape, std::int64_t batch, int reps) {
  std::vector<Row> rows;
  Rng rng(1);
  B::tensor x;
  x.resize(in_shape, batch);
  B::fill_normal(x.data, 0.f, 1.f, rng);
  B::tensor cur = x;
  std::size_t i = 0;
  auto one = [&](auto& layer) {
    B::tensor y, dx;
    const double fwd = time_median(reps, [&] { layer.forward(cur, y, nn::Mode::train); });
    B::tensor dy{y.data, y.shape};
    const bool first = i++ == 0;  // the Trainer never asks the first layer for dL/dx
    const double bwd = time_median(reps, [&] {
      layer.forward(cur, y, nn::Mode::train);
      layer.backward(cur, y, dy, first ? nullptr : &dx);
    }) - fwd;
    const double macs = layer_macs(layer, cur.shape) * static_cast<double>(batch);
    // forward: 2 macs; backward: dW (2 macs) + dX (2 macs, not for the first layer)
    rows.push_back({layer.name(), fwd, std::max(bwd, 0.0), macs * (first ? 4.0 : 6.0)});
    cur = y;
  };
  [&]<std::size_t... I>(std::index_sequence<I...>) { (one(net.template layer<I>()), ...); }(
      std::make_index_sequence<Net::num_layers>{});
  return rows;
}

}  // namespace

int main(int argc, char** argv) try {
  cli::Args args("bench_layers", "Per-layer time and GFLOP/s of a training step, against the GEMM peak.");
  auto threads = args.add<int>("threads", 2, "threads for the matrix products");
  auto batch = args.add<std::int64_t>("batch", 128, "minibatch size");
  auto reps = args.add<int>("reps", 7, "repetitions per measurement (median)");
  auto model = args.add<std::string>("model", "cnn", "cnn or mlp");
  args.parse(argc, argv);
  detail::require(*model == "cnn" || *model == "mlp", "--model must be cnn or mlp");
  set_threads(*threads);

  const double peak = gemm_peak(*reps);
  std::printf("Eigen sgemm 1024^3 on %d threads: %.1f GFLOP/s (the peak below)\n\n", *threads, peak);
  std::vector<Row> rows;
  if (*model == "cnn") {
    CNN net;
    rows = time_layers(net, Shape(1, 28, 28), *batch, *reps);
  } else {
    MLP net;
    rows = time_layers(net, Shape(1, 28, 28), *batch, *reps);
  }
  double total_s = 0, total_flops = 0;
  std::printf("%-24s %10s %10s %12s %9s %7s\n", "layer", "fwd ms", "bwd ms", "GFLOP", "GFLOP/s", "% peak");
  for (const auto& r : rows) {
    const double s = r.fwd_s + r.bwd_s;
    total_s += s;
    total_flops += r.flops;
    const double gf = r.flops > 0 ? r.flops / s / 1e9 : 0.0;
    std::printf("%-24s %10.2f %10.2f %12.3f %9.1f %6.0f%%\n", r.name.c_str(), r.fwd_s * 1e3, r.bwd_s * 1e3,
                r.flops / 1e9, gf, 100 * gf / peak);
  }
  const double step_gf = total_flops / total_s / 1e9;
  if (*model == "cnn") {
    // The layout and chunking decision for Conv2d, measured on the CNN's second convolution
    // (32 -> 64 channels, 5x5, 14x14 images): forward + backward time for several patch
    // budgets per chunk. One sample per chunk is what an NCHW layout forces (each sample's
    // output is its own GEMM); NHWC lets a chunk of samples share one GEMM.
    std::printf("\nConv2d<32,64,5,1,2> forward+backward by patch-matrix budget per chunk:\n");
    for (std::int64_t kib : {1, 1024, 4096, 16384, 1 << 20}) {
      nn::Conv2d<32, 64, 5, 1, 2> conv;
      conv.set_chunk_bytes(kib << 10);
      conv.set_parallelism(nn::ConvParallel::gemm);
      conv_row(kib == 1            ? "1 sample per GEMM (NCHW-like)"
               : kib == (1 << 20) ? "whole batch in one GEMM"
                                  : (std::to_string(kib / 1024) + " MiB chunks").c_str(),
               conv, Shape(32, 14, 14), *batch, *reps, true);
    }
    // How the batch is spread over threads: every GEMM on all threads, or one part of the
    // batch per thread with single-threaded GEMMs (Conv2d::thin_patch chooses).
    std::printf("\nthreads over GEMMs vs threads over samples (4 MiB chunks):\n");
    for (auto p : {nn::ConvParallel::gemm, nn::ConvParallel::samples}) {
      const char* how = p == nn::ConvParallel::gemm ? "GEMM-parallel" : "sample-parallel";
      nn::Conv2d<1, 32, 5, 1, 2> first;
      first.set_parallelism(p);
      conv_row((std::string("Conv2d<1,32,5,1,2>  ") + how).c_str(), first, Shape(1, 28, 28), *batch, *reps, false);
      nn::Conv2d<32, 64, 5, 1, 2> second;
      second.set_parallelism(p);
      conv_row((std::string("Conv2d<32,64,5,1,2> ") + how).c_str(), second, Shape(32, 14, 14), *batch, *reps, true);
    }
  }
  std::printf("%-24s %10s %10.2f %12.3f %9.1f %6.0f%%\n", "whole step (layers)", "", total_s * 1e3,
              total_flops / 1e9, step_gf, 100 * step_gf / peak);
  std::printf("=> %.0f samples/s from the layers alone\n", static_cast<double>(*batch) / total_s);
  json::object o;
  o.add("name", "bench_layers")
      .add("model", *model)
      .add("threads", *threads)
      .add("batch", static_cast<std::int64_t>(*batch))
      .add("gemm_peak_gflops", peak)
      .add("step_gflops", step_gf)
      .add("fraction_of_peak", step_gf / peak)
      .add("samples_per_second", static_cast<double>(*batch) / total_s);
  std::cout << o.str() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_layers: error: %s\n", e.what());
  return 1;
}
