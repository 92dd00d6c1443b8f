// bench_gpu_accuracy -- time to a test accuracy of the ResNet example on gpu::thrust, in fp32
// and with methods::MixedPrecision (bf16 products); benchmarks/gpu/torch_peer.py --to-accuracy
// trains the same network with the same recipe in PyTorch on the same GPU.
//
// The ResNet example's recipe (examples/models.hpp): SGD with Nesterov momentum 0.9, lr 0.05,
// decoupled weight decay 5e-5, 0.5 epochs of linear warmup times a cosine over --epochs, batch
// 128, seed 1, pixels normalised by the training set's mean and deviation; the training set on
// the device (data::DeviceLoader). The test set is evaluated every half epoch, outside the
// training time. The whole budget runs (no early stop), so the final accuracy is comparable
// between the precisions; the time to --target is read off the evaluations.
//
//   bench_gpu_accuracy [--epochs 10] [--target 0.91] [--precision fp32,bf16] [--batch 128] [--data DIR]
//
// Prints one JSON line per precision: final test accuracy, seconds and epochs to the target
// (null when not reached), training seconds.
#include <cstdio>
#include <sstream>
#include <string>

#include <fasttrain/core/cli.hpp>
#include <fasttrain/data/device_loader.hpp>
#include <fasttrain/fasttrain.hpp>
#include <fasttrain/tensor/thrust.hpp>

#include "../examples/models.hpp"

using namespace fasttrain;
using B = gpu::thrust;

namespace {

template <class... Methods>
Result fit_resnet(const data::Dataset& train_set, const data::Dataset& test, double epochs, std::int64_t batch,
             Methods... methods) {
  examples::ResNet::rebind<B> net;
  net.reset_parameters(std::uint64_t{1});
  Trainer trainer(net,
                  optim::BasicSGD<B>({.lr = examples::resnet_lr, .momentum = 0.9f, .nesterov = true,
                                      .weight_decay = examples::resnet_weight_decay}),
                  nn::BasicSoftmaxCrossEntropy<B>{}, methods...);
  data::DeviceLoader<B> loader(train_set, {.batch_size = batch, .seed = 1});
  FitOptions fo;
  fo.max_duration = Duration(epochs, Unit::epoch);
  fo.eval_interval = Duration(0.5, Unit::epoch);
  fo.progress = ProgressMode::never;
  auto lr = [w = examples::resnet_warmup_epochs, cos = schedule::cosine()](const Time& t) {
    return static_cast<float>(std::min(1.0, t.ratio(Duration{w, Unit::epoch}))) * cos(t);
  };
  return trainer.fit(loader, &test, fo, lr);
}

}  // namespace

int main(int argc, char** argv) try {
  cli::Args args("bench_gpu_accuracy", "Time to a test accuracy of the ResNet example on gpu::thrust.");
  auto epochs = args.add<double>("epochs", examples::resnet_epochs, "training budget in epochs");
  auto target = args.add<double>("target", 0.91, "the test accuracy timed");
  auto precisions = args.add<std::string>("precision", "fp32,bf16", "comma-separated: fp32, bf16");
  auto batch = args.add<std::int64_t>("batch", 128, "batch size");
  auto dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
  args.parse(argc, argv);
  auto [train_set, test] = data::fashion_mnist(*dir);
  const auto norm = data::Normalizer::fit(train_set);
  norm.apply(train_set);
  norm.apply(test);
  std::stringstream list(*precisions);
  for (std::string p; std::getline(list, p, ',');) {
    if (p != "fp32" && p != "bf16") throw config_error("bench_gpu_accuracy: --precision takes fp32 and bf16, got " + p);
    const Result r = p == "bf16" ? fit_resnet(train_set, test, *epochs, *batch, methods::MixedPrecision{})
                                 : fit_resnet(train_set, test, *epochs, *batch);
    const EvalRecord* hit = nullptr;
    for (const auto& e : r.history)
      if (e.test_accuracy >= *target) {
        hit = &e;
        break;
      }
    std::printf("{\"bench\":\"gpu_accuracy\",\"backend\":%s,\"model\":\"resnet\",\"precision\":\"%s\",\"batch\":%lld,"
                "\"epochs\":%g,\"target\":%g,\"test_accuracy\":%.4f,\"seconds_to_target\":%s,"
                "\"epochs_to_target\":%s,\"train_seconds\":%.2f}\n",
                json::quote(B::name).c_str(), p.c_str(), static_cast<long long>(*batch), *epochs, *target,
                r.test_accuracy, hit ? json::number(hit->train_seconds).c_str() : "null",
                hit ? json::number(hit->epochs).c_str() : "null", r.train_seconds);
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gpu_accuracy: %s\n", e.what());
  return 1;
}
