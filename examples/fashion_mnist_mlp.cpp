// fashion_mnist_mlp -- the main demo: a 784-256-128-10 MLP trained on Fashion-MNIST with
// SGD + Nesterov momentum and a cosine schedule, evaluated after every epoch.
//
//   fashion_mnist_mlp [--epochs 10] [--seed 1] [--threads 2] [--batch 128] [--data DIR]
//                     [--label-smoothing S] [--clip-norm T]
//
// The two method flags pick the recipe at run time; each choice is its own Trainer type,
// composed at compile time (a method that is off is not in the binary's hot loop).
// Prints progress on a terminal and ends with one JSON line of results.
#include <cstdio>
#include <exception>
#include <fasttrain/core/cli.hpp>
#include <fasttrain/fasttrain.hpp>
#include <iostream>

using namespace fasttrain;
using namespace fasttrain::literals;

using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU,  //
                           nn::Linear<256, 128>, nn::ReLU,  //
                           nn::Linear<128, 10>>;

int main(int argc, char** argv) try {
  cli::Args args("fashion_mnist_mlp", "Trains a 784-256-128-10 MLP on Fashion-MNIST with SGD + Nesterov.");
  auto epochs = args.add<double>("epochs", 10, "training epochs");
  auto seed = args.add<std::uint64_t>("seed", 1, "seed for initialisation and shuffling");
  auto threads = args.add<int>("threads", 2, "threads for the matrix products");
  auto batch = args.add<std::int64_t>("batch", 128, "minibatch size");
  auto lr = args.add<float>("lr", 0.05f, "base learning rate");
  auto data_dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
  auto target = args.add<double>("target", 0.0, "stop at this test accuracy (0: train the full budget)");
  auto smoothing = args.add<float>("label-smoothing", 0.f, "LabelSmoothing strength (0: off)");
  auto clip = args.add<float>("clip-norm", 0.f, "GradientClipping by global norm (0: off)");
  args.parse(argc, argv);

  set_threads(*threads);
  auto [train, test] = data::fashion_mnist(*data_dir);
  const auto norm = data::Normalizer::fit(train);
  norm.apply(train);
  norm.apply(test);

  data::Loader loader(train, {.batch_size = *batch, .shuffle = true, .seed = *seed, .prefetch = 2});
  MLP model;
  model.reset_parameters(*seed);
  FitOptions opt;
  opt.max_duration = Duration{*epochs, Unit::epoch};
  opt.name = "fashion_mnist_mlp";
  if (*target > 0) opt.target_accuracy = *target;

  auto run = [&](auto... methods) {
    Trainer trainer{model, optim::SGD{{.lr = *lr, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-5f}},
                    nn::SoftmaxCrossEntropy{}, methods...};
    return trainer.fit(loader, test, opt, schedule::cosine());
  };
  Result r;
  if (*smoothing > 0 && *clip > 0)
    r = run(methods::LabelSmoothing{*smoothing}, methods::GradientClipping::by_norm(*clip));
  else if (*smoothing > 0)
    r = run(methods::LabelSmoothing{*smoothing});
  else if (*clip > 0)
    r = run(methods::GradientClipping::by_norm(*clip));
  else
    r = run();
  r.extra.push_back({"label_smoothing", json::number(*smoothing)});
  r.extra.push_back({"clip_norm", json::number(*clip)});
  r.extra.push_back({"threads", std::to_string(*threads)});
  r.extra.push_back({"batch", std::to_string(*batch)});
  r.extra.push_back({"seed", std::to_string(*seed)});
  std::cout << r.json() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "fashion_mnist_mlp: error: %s\n", e.what());
  return 1;
}
