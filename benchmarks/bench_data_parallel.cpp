// bench_data_parallel -- samples/s of dist::DataParallel and the time its allreduces take.
//
// Trains the 784-256-128-10 MLP (or, with --model cnn, the CNN example's network) on
// Fashion-MNIST for --epochs epochs on every rank of the job, each rank on its shard with
// batch --batch (weak scaling: the global batch is ranks x batch), without evaluation.
// Rank 0 prints one JSON line: ranks, threads per rank, the job's samples/s (all ranks'
// samples over the slowest rank's seconds) and the seconds spent in the gradient
// allreduces (the largest over the ranks). benchmarks/data_parallel.sh runs it with 1 and 2
// ranks and prints the scaling efficiency: samples/s(W) / (W * samples/s(1)).
//
//   mpiexec -n 2 bench_data_parallel [--epochs 1] [--batch 64] [--threads 1] [--model mlp|cnn] [--seed 1]
#include <fasttrain/core/cli.hpp>
#include <fasttrain/dist/dist.hpp>
#include <fasttrain/fasttrain.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "../examples/models.hpp"

using namespace fasttrain;

using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 128>, nn::ReLU, nn::Linear<128, 10>>;

namespace {
template <class Model>
void measure(dist::Communicator& comm, const data::Dataset& train, double epochs, std::int64_t batch,
             std::uint64_t seed, int threads, const std::string& model_name) {
  Model model;
  model.reset_parameters(seed);
  data::Loader loader(train, {.batch_size = batch, .seed = seed, .prefetch = 2, .num_shards = comm.size(),
                              .shard = comm.rank()});
  Trainer t{model, optim::SGD{{.lr = 0.05f, .momentum = 0.9f, .nesterov = true}}, nn::SoftmaxCrossEntropy{},
            dist::DataParallel{comm}};
  FitOptions o;
  o.max_duration = Duration{epochs, Unit::epoch};
  o.progress = ProgressMode::never;
  o.name = "bench_data_parallel";
  comm.barrier();  // start together
  Result r = t.fit(loader, nullptr, o);
  const auto& s = t.template method<dist::DataParallel>().stats();
  // The job's throughput: every rank's samples over the slowest rank's time.
  const double slowest = static_cast<double>(comm.max(static_cast<std::int64_t>(r.train_seconds * 1e6))) / 1e6;
  const double comm_s = static_cast<double>(comm.max(static_cast<std::int64_t>(s.communication_seconds * 1e6))) / 1e6;
  const std::int64_t samples = r.samples * comm.size();
  if (comm.rank() != 0) return;
  r.train_seconds = slowest;
  r.samples_per_second = static_cast<double>(samples) / slowest;
  r.extra.push_back({"model", json::quote(model_name)});
  r.extra.push_back({"ranks", std::to_string(comm.size())});
  r.extra.push_back({"threads_per_rank", std::to_string(threads)});
  r.extra.push_back({"batch_per_rank", std::to_string(batch)});
  r.extra.push_back({"global_batch", std::to_string(batch * comm.size())});
  r.extra.push_back({"job_samples", std::to_string(samples)});
  r.extra.push_back({"communication_seconds", json::number(comm_s)});
  r.extra.push_back({"communication_fraction", json::number(comm_s / slowest)});
  r.extra.push_back({"allreduce_messages_per_step", json::number(s.reductions ? double(s.messages) / double(s.reductions) : 0.0)});
  r.extra.push_back({"gradient_bytes_per_step", std::to_string(s.reductions ? s.bytes / s.reductions : 0)});
  std::cout << r.json() << std::endl;
}
}  // namespace

int main(int argc, char** argv) {
  return dist::run(argc, argv, [&](dist::Communicator& comm) {
    cli::Args args("bench_data_parallel", "Samples/s and communication time of dist::DataParallel on Fashion-MNIST.");
    auto epochs = args.add<double>("epochs", 1.0, "training epochs (of each rank's shard)");
    auto batch = args.add<std::int64_t>("batch", 64, "batch size per rank");
    auto threads = args.add<int>("threads", 1, "threads per rank for the matrix products");
    auto model = args.add<std::string>("model", "mlp", "mlp or cnn");
    auto seed = args.add<std::uint64_t>("seed", 1, "seed");
    auto data_dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
    args.parse(argc, argv);
    fasttrain::detail::require(*model == "mlp" || *model == "cnn", "bench_data_parallel: --model must be mlp or cnn");
    set_threads(*threads);
    auto [train, test] = data::fashion_mnist(*data_dir);
    data::Normalizer::fit(train).apply(train);
    if (*model == "mlp") measure<MLP>(comm, train, *epochs, *batch, *seed, *threads, *model);
    else measure<examples::CNN>(comm, train, *epochs, *batch, *seed, *threads, *model);
  });
}
