// bench_checkpoint -- what reliability costs on the Fashion-MNIST CNN (3.27 M parameters)
// trained with DataPruning on a 60k-sample set (its kept set and the epoch order it sets, 42k
// indices each, are in the checkpoint): the file's size against the raw bytes of the floats
// and integers it holds, writing a checkpoint (encode, write, fsync, rename), its peak memory,
// reading it back (read + CRC checks), restoring it into a Trainer, and the per-step check
// that every gradient is finite. Medians of --reps repetitions; ends with one JSON line.
//
//   bench_checkpoint [--threads 2] [--reps 7] [--dir /tmp] [--samples 60000]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fasttrain/core/cli.hpp>
#include <fasttrain/fasttrain.hpp>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;
using clk = std::chrono::steady_clock;

using CNN = nn::Sequential<nn::Conv2d<1, 32, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>, nn::Conv2d<32, 64, 5, 1, 2>,
                           nn::ReLU, nn::MaxPool2d<2>, nn::Flatten, nn::Linear<3136, 1024>, nn::ReLU,
                           nn::Linear<1024, 10>>;

namespace {
template <class F>
double median_seconds(int reps, F&& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clk::now();
    f();
    t.push_back(std::chrono::duration<double>(clk::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace

int main(int argc, char** argv) try {
  cli::Args args("bench_checkpoint", "Cost of checkpoints and of the gradient finiteness check on the CNN.");
  auto threads = args.add<int>("threads", 2, "threads");
  auto reps = args.add<int>("reps", 7, "repetitions per measurement (median)");
  auto dir = args.add<std::string>("dir", std::filesystem::temp_directory_path().string(), "where to write");
  auto samples = args.add<int>("samples", 60000, "training samples (random images)");
  args.parse(argc, argv);
  detail::require(*reps >= 1, "--reps must be >= 1");
  detail::require(*samples >= 256, "--samples must be >= 256");
  set_threads(*threads);

  // Random images, Fashion-MNIST's size: two steps create the momentum buffers; DataPruning
  // scores every sample first (EL2N at score_epoch 0) and keeps 70%.
  data::Dataset ds;
  ds.name = "random";
  ds.sample_shape = Shape(1, 28, 28);
  ds.num_classes = 10;
  ds.features.resize(784, *samples);
  Rng rng(1);
  B::fill_normal(ds.features, 0.f, 1.f, rng);
  for (int i = 0; i < *samples; ++i) ds.labels.push_back(i % 10);
  data::Loader loader(ds, {.batch_size = 128, .seed = 1});
  CNN net;
  net.reset_parameters(1);
  Trainer trainer{net, optim::SGD{{.lr = 0.01f, .momentum = 0.9f, .nesterov = true}}, nn::SoftmaxCrossEntropy{},
                  methods::DataPruning{{.fraction = 0.3f, .score_epoch = 0}}};
  (void)trainer.fit(loader, nullptr, {.max_duration = 2_ba, .progress = ProgressMode::never});
  const auto kept = static_cast<std::int64_t>(trainer.method<methods::DataPruning>().kept().size());
  // The raw bytes: parameters and momentum buffers (floats), the kept set and the epoch
  // order (int64 indices).
  const double raw_bytes = 2.0 * 4 * static_cast<double>(net.parameter_count()) + 2.0 * 8 * static_cast<double>(kept);

  const std::string path = (std::filesystem::path(*dir) / "fasttrain_bench.ftc").string();
  trainer.save_checkpoint(path);
  long peak_kib = -1;  // peak resident memory added by one save
  if (profile::reset_peak_resident()) {
    const long before = profile::resident_kib();
    trainer.save_checkpoint(path);
    peak_kib = profile::peak_resident_kib() - before;
  }
  const double write_s = median_seconds(*reps, [&] { trainer.save_checkpoint(path); });
  const auto bytes = std::filesystem::file_size(path);
  const double read_s = median_seconds(*reps, [&] { (void)io::read_checkpoint(path); });
  FitOptions resume{.max_duration = 2_ba, .progress = ProgressMode::never, .resume_from = path};
  // Resuming at the budget's end runs no step: this is the load alone (plus fit's checks).
  const double resume_s = median_seconds(*reps, [&] { (void)trainer.fit(loader, nullptr, resume); });

  // The per-step gradient check, against one training step (forward + backward + update).
  bool finite = true;
  const double check_s = median_seconds(*reps * 5, [&] {
    net.for_each_parameter([&](auto&, auto& g) { finite = finite && B::all_finite(g); });
  });
  data::Batch<> batch;
  loader.start_epoch(0);
  loader.next(batch);
  nn::SoftmaxCrossEntropy loss;
  optim::SGD sgd{{.lr = 0.01f, .momentum = 0.9f, .nesterov = true}};
  B::tensor grad;
  const double step_s = median_seconds(*reps, [&] {
    const auto& out = net.forward(batch.inputs, nn::Mode::train);
    (void)loss.forward(out, {&batch.labels, nullptr});
    loss.backward(grad);
    net.backward(grad);
    sgd.step(net, 1.f);
  });
  std::filesystem::remove(path);

  const double mb = static_cast<double>(bytes) / 1e6;
  std::printf("CNN, %lld parameters, DataPruning keeping %lld of %d samples, %d threads\n",
              static_cast<long long>(net.parameter_count()), static_cast<long long>(kept), *samples, *threads);
  std::printf("checkpoint file            %8.2f MB   (raw floats and ints %.2f MB: +%.2f%%)\n", mb, raw_bytes / 1e6,
              100 * (static_cast<double>(bytes) / raw_bytes - 1));
  std::printf("peak memory of a save      %8.1f MB\n", static_cast<double>(peak_kib) / 1024);
  std::printf("write (encode+fsync+rename)%8.1f ms   %6.0f MB/s\n", write_s * 1e3, mb / write_s);
  std::printf("read + CRC check           %8.1f ms   %6.0f MB/s\n", read_s * 1e3, mb / read_s);
  std::printf("resume (read + restore)    %8.1f ms\n", resume_s * 1e3);
  std::printf("gradient check per step    %8.3f ms   (%.2f%% of a %.1f ms training step)%s\n", check_s * 1e3,
              100 * check_s / step_s, step_s * 1e3, finite ? "" : "  [non-finite gradients!]");
  json::object o;
  o.add("name", "bench_checkpoint")
      .add("threads", *threads)
      .add("parameters", net.parameter_count())
      .add("kept", kept)
      .add("checkpoint_mb", mb)
      .add("raw_mb", raw_bytes / 1e6)
      .add("overhead_fraction", static_cast<double>(bytes) / raw_bytes - 1)
      .add("save_peak_mb", static_cast<double>(peak_kib) / 1024)
      .add("write_ms", write_s * 1e3)
      .add("read_ms", read_s * 1e3)
      .add("resume_ms", resume_s * 1e3)
      .add("gradient_check_ms", check_s * 1e3)
      .add("step_ms", step_s * 1e3)
      .add("gradient_check_fraction", check_s / step_s);
  std::cout << o.str() << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_checkpoint: error: %s\n", e.what());
  return 1;
}
