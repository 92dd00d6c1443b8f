// bench_ema_short -- weight averagers at their defaults on short runs, as a new user tries
// them (issue 23): a BatchNorm CNN (three conv blocks, global average pooling) on
// Fashion-MNIST, SGD with momentum at a constant learning rate, with --method none, ema
// (methods::EMA{}), swa (methods::SWA{}) or lookahead (methods::Lookahead{}); the test
// accuracy after every epoch. The same source builds against older headers, which is how the
// figures before a change are measured. Ends with one JSON line.
//
//   bench_ema_short [--method ema] [--epochs 3] [--seed 1] [--threads 2] [--data DIR]
#include <cstdio>
#include <fasttrain/core/cli.hpp>
#include <fasttrain/fasttrain.hpp>
#include <iostream>
#include <string>

using namespace fasttrain;
using namespace fasttrain::literals;

using BnCnn = nn::Sequential<nn::Conv2d<1, 16, 3, 1, 1>, nn::BatchNorm2d<16>, nn::ReLU, nn::MaxPool2d<2>,  // 14x14
                             nn::Conv2d<16, 32, 3, 1, 1>, nn::BatchNorm2d<32>, nn::ReLU, nn::MaxPool2d<2>,  // 7x7
                             nn::Conv2d<32, 64, 3, 1, 1>, nn::BatchNorm2d<64>, nn::ReLU, nn::GlobalAvgPool,
                             nn::Linear<64, 10>>;

int main(int argc, char** argv) try {
  cli::Args args("bench_ema_short", "Weight averagers at their defaults on a short BatchNorm CNN run.");
  auto method = args.add<std::string>("method", "ema", "none, ema, swa or lookahead (at their defaults)");
  auto epochs = args.add<double>("epochs", 3, "training epochs");
  auto seed = args.add<std::uint64_t>("seed", 1, "seed for initialisation and shuffling");
  auto threads = args.add<int>("threads", 2, "threads");
  auto lr = args.add<float>("lr", 0.05f, "learning rate (constant)");
  auto data_dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
  args.parse(argc, argv);
  set_threads(*threads);

  auto [train, test] = data::fashion_mnist(*data_dir);
  const auto norm = data::Normalizer::fit(train);
  norm.apply(train);
  norm.apply(test);
  data::Loader loader(train, {.batch_size = 128, .shuffle = true, .seed = *seed, .prefetch = 2});
  FitOptions opt{.max_duration = Duration{*epochs, Unit::epoch}, .name = "bench_ema_short"};
  auto run = [&](auto... methods) {
    BnCnn net;
    net.reset_parameters(*seed);
    Trainer t{net, optim::SGD{{.lr = *lr, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, methods...};
    return t.fit(loader, test, opt);
  };
  Result r;
  if (*method == "none") r = run();
  else if (*method == "ema") r = run(methods::EMA{});
  else if (*method == "swa") r = run(methods::SWA{});
  else if (*method == "lookahead") r = run(methods::Lookahead{});
  else throw config_error("--method must be none, ema, swa or lookahead, got '" + *method + "'");
  for (const auto& h : r.history)
    std::printf("%s seed %llu epoch %lld: test accuracy %.4f, train loss %.4f\n", method->c_str(),
                static_cast<unsigned long long>(*seed), static_cast<long long>(h.epoch), h.test_accuracy, h.train_loss);
  r.extra.push_back({"method", json::quote(*method)});
  r.extra.push_back({"seed", std::to_string(*seed)});
  std::string accs = "[";
  for (const auto& h : r.history) accs += (accs.size() > 1 ? "," : "") + json::number(h.test_accuracy);
  r.extra.push_back({"accuracy_per_epoch", accs + "]"});
  std::cout << r.json() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_ema_short: error: %s\n", e.what());
  return 1;
}
