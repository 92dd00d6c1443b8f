// bench_backends -- training throughput of the MLP, CNN and ResNet examples on each backend.
//
// Trains the Fashion-MNIST MLP (784-256-128-10), CNN and ResNet (examples/models.hpp) with
// the Trainer for --steps batches after --warmup batches, on cpu::eigen, cpu::xtensor and
// gpu::thrust (whichever this build has), and prints samples/s per (backend, model) and one
// JSON line each. Evaluation is excluded (no test set during the timed fit); the data
// loader is included: with --device-data 1 (the default) the backends other than cpu::eigen
// keep the training set in their memory (data::DeviceLoader) and gather batches there, with
// 0 the host Loader's batches are uploaded each step.
//
// Built with g++ (benchmarks/CMakeLists.txt): gpu::thrust runs on Thrust's OMP device system,
// on the CPU. Built with nvcc by benchmarks/gpu/run.sh: gpu::thrust runs on the GPU.
//
//   bench_backends [--backends eigen,xtensor,thrust] [--models mlp,cnn,resnet] [--batch 128]
//                  [--steps 200] [--cnn-steps 30] [--warmup 5] [--threads 2] [--data DIR]
//                  [--device-data 1] [--precision fp32|bf16|fp16]
// The ResNet runs --cnn-steps batches, like the CNN.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include <fasttrain/core/cli.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <fasttrain/data/device_loader.hpp>
#include <fasttrain/fasttrain.hpp>
#include <fasttrain/tensor/thrust.hpp>
#ifdef FASTTRAIN_BENCH_XTENSOR
#include <fasttrain/tensor/xtensor.hpp>
#endif

#include "../examples/models.hpp"

using namespace fasttrain;

using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 128>, nn::ReLU, nn::Linear<128, 10>>;

namespace {

bool listed(const std::string& list, const std::string& item) {
  std::stringstream ss(list);
  std::string t;
  while (std::getline(ss, t, ','))
    if (t == item) return true;
  return false;
}

struct Options {
  std::int64_t batch, steps, warmup;
  int threads;
  bool device_data;
  std::string precision;  // fp32, or bf16 / fp16 (MixedPrecision, on gpu::thrust)
};

/// Whether backend B reads its batches from a data::DeviceLoader in this run.
template <class B>
bool on_device(const Options& o) {
  return o.device_data && !std::is_same_v<B, cpu::eigen>;
}

/// Samples per second of `steps` training batches of Net on backend B (after `warmup`).
template <class B, class Net, class Source, class... Methods>
double timed_fit(Source& loader, std::int64_t steps, const Options& o, double& loss, Methods... methods) {
  typename Net::template rebind<B> net;
  net.reset_parameters(std::uint64_t{1});
  Trainer trainer(net, optim::BasicSGD<B>({.lr = 0.02f, .momentum = 0.9f, .nesterov = true}),
                  nn::BasicSoftmaxCrossEntropy<B>{}, methods...);
  FitOptions warm;
  warm.max_duration = Duration(static_cast<double>(o.warmup), Unit::batch);
  trainer.fit(loader, nullptr, warm);
  FitOptions fo;
  fo.max_duration = Duration(static_cast<double>(steps), Unit::batch);
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = trainer.fit(loader, nullptr, fo);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  loss = r.final_train_loss;
  return static_cast<double>(r.samples) / seconds;
}

/// Whether backend B has 16-bit products (methods::MixedPrecision).
template <class B>
constexpr bool has_mixed_precision = requires { B::set_gemm_precision(B::precision::bf16); };

/// The same with MixedPrecision in the recipe when the options ask for it.
template <class B, class Net, class Source>
double timed_fit_in(Source& loader, std::int64_t steps, const Options& o, double& loss) {
  if constexpr (has_mixed_precision<B>) {
    if (o.precision == "bf16" || o.precision == "fp16")
      return timed_fit<B, Net>(loader, steps, o, loss,
                               methods::MixedPrecision({.precision = o.precision == "bf16" ? methods::Precision::bf16
                                                                                            : methods::Precision::fp16}));
  }
  return timed_fit<B, Net>(loader, steps, o, loss);
}

/// The same from a Loader, or a DeviceLoader where the options ask for one.
template <class B, class Net>
double throughput(const data::Dataset& train, std::int64_t steps, const Options& o, double& loss) {
  const data::LoaderOptions lo{.batch_size = o.batch, .seed = 1};
  if (on_device<B>(o)) {
    data::DeviceLoader<B> loader(train, lo);
    return timed_fit_in<B, Net>(loader, steps, o, loss);
  }
  data::Loader loader(train, lo);
  return timed_fit_in<B, Net>(loader, steps, o, loss);
}

template <class B>
void run_backend(const data::Dataset& train, const std::string& models,
                 std::int64_t mlp_steps, std::int64_t cnn_steps, const Options& o) {
  auto report = [&](const char* model, std::int64_t steps, double sps, double loss) {
    std::printf("%-20s %-6s batch %-5lld %8.0f samples/s  (loss after %lld steps %.4f)\n", B::name, model,
                static_cast<long long>(o.batch), sps, static_cast<long long>(steps), loss);
    std::printf("{\"bench\":\"backends\",\"backend\":%s,\"model\":\"%s\",\"batch\":%lld,\"steps\":%lld,"
                "\"threads\":%d,\"data\":\"%s\",\"precision\":\"%s\",\"samples_per_second\":%.1f,"
                "\"final_train_loss\":%.6f}\n",
                json::quote(B::name).c_str(), model, static_cast<long long>(o.batch), static_cast<long long>(steps),
                o.threads, on_device<B>(o) ? "device" : "host", has_mixed_precision<B> ? o.precision.c_str() : "fp32",
                sps, loss);
    std::fflush(stdout);
  };
  double loss = 0;  // set by throughput() before report() reads it
  if (listed(models, "mlp")) {
    const double sps = throughput<B, MLP>(train, mlp_steps, o, loss);
    report("mlp", mlp_steps, sps, loss);
  }
  if (listed(models, "cnn")) {
    const double sps = throughput<B, examples::CNN>(train, cnn_steps, o, loss);
    report("cnn", cnn_steps, sps, loss);
  }
  if (listed(models, "resnet")) {
    const double sps = throughput<B, examples::ResNet>(train, cnn_steps, o, loss);
    report("resnet", cnn_steps, sps, loss);
  }
}

}  // namespace

int main(int argc, char** argv) try {
  cli::Args args("bench_backends", "Training samples/s of the MLP and CNN on each backend.");
  auto backends = args.add<std::string>("backends", "eigen,xtensor,thrust", "comma-separated: eigen, xtensor, thrust");
  auto models = args.add<std::string>("models", "mlp,cnn", "comma-separated: mlp, cnn, resnet");
  auto batch = args.add<std::int64_t>("batch", 128, "batch size");
  auto steps = args.add<std::int64_t>("steps", 200, "timed MLP batches");
  auto cnn_steps = args.add<std::int64_t>("cnn-steps", 30, "timed CNN and ResNet batches");
  auto warmup = args.add<std::int64_t>("warmup", 5, "untimed batches first");
  auto threads = args.add<int>("threads", 2, "CPU threads (Eigen, OpenMP)");
  auto dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
  auto device_data = args.add<int>("device-data", 1,
                                   "1: backends other than cpu::eigen keep the training set in their memory "
                                   "(data::DeviceLoader); 0: upload each batch");
  auto precision = args.add<std::string>("precision", "fp32",
                                         "fp32; bf16 or fp16: methods::MixedPrecision on gpu::thrust (the CPU "
                                         "backends stay fp32)");
  args.parse(argc, argv);
  set_threads(*threads);
#ifdef _OPENMP
  omp_set_num_threads(*threads);
#endif
  const data::TrainTest ds = data::fashion_mnist(*dir);
  if (*precision != "fp32" && *precision != "bf16" && *precision != "fp16")
    throw config_error("bench_backends: --precision must be fp32, bf16 or fp16, got " + *precision);
  const Options o{*batch, *steps, *warmup, *threads, *device_data != 0, *precision};
  if (listed(*backends, "eigen")) run_backend<cpu::eigen>(ds.train, *models, *steps, *cnn_steps, o);
#ifdef FASTTRAIN_BENCH_XTENSOR
  if (listed(*backends, "xtensor")) run_backend<cpu::xtensor>(ds.train, *models, *steps, *cnn_steps, o);
#else
  if (listed(*backends, "xtensor")) std::printf("cpu::xtensor: not in this build (no xtensor found)\n");
#endif
  if (listed(*backends, "thrust")) run_backend<gpu::thrust>(ds.train, *models, *steps, *cnn_steps, o);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_backends: %s\n", e.what());
  return 1;
}
