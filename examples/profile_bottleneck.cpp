// profile_bottleneck -- the same input pipeline binds one network and not another, and the
// profiler says which, with the methods that help.
//
// The loader applies an elastic distortion to every image (Simard et al. 2003: a random
// displacement field, Gaussian-smoothed, then bilinear resampling) on its one prefetch thread.
// 1. The MLP trains faster than that thread prepares batches: the run is data-bound, and the
//    report advises data-side methods (DataEchoing first).
// 2. The same MLP with the advice taken (DataEchoing, factor 2): more steps per loaded batch.
// 3. The CNN needs far more compute per batch, so the same pipeline keeps up: compute binds,
//    and the report advises compute-side methods.
//
//   profile_bottleneck [--batches 150] [--threads 2] [--sigma 4] [--alpha 34] [--data DIR]
//
// Ends with one JSON line: each run's bottleneck, data-wait share and samples/s.
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "example_main.hpp"
#include "models.hpp"

namespace {
using namespace fasttrain;

/// Elastic distortion of every 28x28 image of the batch, in place.
struct ElasticDistortion {
  float sigma = 4.f;  ///< smoothing of the displacement field, pixels
  float alpha = 34.f;  ///< displacement scale (Simard et al.: 34 for 28x28 digits)

  void operator()(data::Batch<>& b, Rng& rng) const {
    const auto& s = b.inputs.shape;
    detail::require(s.rank == 3 && s[0] == 1, "ElasticDistortion: expects 1-channel images, got ", s.str());
    const int h = static_cast<int>(s[1]), w = static_cast<int>(s[2]), r = static_cast<int>(std::ceil(2 * sigma));
    std::vector<float> kernel(static_cast<std::size_t>(2 * r + 1));
    float ksum = 0;
    for (int i = -r; i <= r; ++i) ksum += kernel[static_cast<std::size_t>(i + r)] = std::exp(-0.5f * i * i / (sigma * sigma));
    for (auto& k : kernel) k /= ksum;
    std::vector<float> field(static_cast<std::size_t>(h * w)), tmp(field.size()), dx(field.size()), dy(field.size()),
        src(field.size());
    auto smooth = [&](std::vector<float>& out) {  // separable Gaussian blur of a fresh random field
      for (auto& v : field) v = rng.uniform(-1.f, 1.f);
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          float acc = 0;
          for (int i = -r; i <= r; ++i) acc += kernel[static_cast<std::size_t>(i + r)] * field[static_cast<std::size_t>(y * w + std::clamp(x + i, 0, w - 1))];
          tmp[static_cast<std::size_t>(y * w + x)] = acc;
        }
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          float acc = 0;
          for (int i = -r; i <= r; ++i) acc += kernel[static_cast<std::size_t>(i + r)] * tmp[static_cast<std::size_t>(std::clamp(y + i, 0, h - 1) * w + x)];
          out[static_cast<std::size_t>(y * w + x)] = alpha * acc;
        }
    };
    for (Eigen::Index j = 0; j < b.inputs.batch(); ++j) {
      float* img = b.inputs.data.data() + j * h * w;
      std::copy(img, img + h * w, src.begin());
      smooth(dx);
      smooth(dy);
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const float fx = std::clamp(x + dx[static_cast<std::size_t>(y * w + x)], 0.f, w - 1.001f);
          const float fy = std::clamp(y + dy[static_cast<std::size_t>(y * w + x)], 0.f, h - 1.001f);
          const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
          const float ax = fx - x0, ay = fy - y0;
          auto at = [&](int yy, int xx) { return src[static_cast<std::size_t>(yy * w + xx)]; };
          img[y * w + x] = (1 - ay) * ((1 - ax) * at(y0, x0) + ax * at(y0, x0 + 1)) +
                           ay * ((1 - ax) * at(y0 + 1, x0) + ax * at(y0 + 1, x0 + 1));
        }
    }
  }
};

template <class Model, class... Methods>
profile::Profile profiled_run(const char* label, const data::Dataset& train, const data::Dataset& test,
                              const ElasticDistortion& distort, std::int64_t batches, float lr, Methods... methods) {
  Model model;
  model.reset_parameters(1);
  data::Loader loader(train, {.batch_size = 128, .seed = 1, .prefetch = 2, .transform = distort});
  Trainer trainer{model, optim::SGD{{.lr = lr, .momentum = 0.9f, .nesterov = true}}, nn::SoftmaxCrossEntropy{},
                  methods..., profile::Profiler{}};
  FitOptions opt;
  opt.max_duration = Duration{static_cast<double>(batches), Unit::batch};
  opt.name = label;
  const Result r = trainer.fit(loader, test, opt);
  const auto& p = trainer.template method<profile::Profiler>().profile();
  std::cout << "\n## " << label << "\n\n"
            << p.samples << " samples in " << p.steps << " steps, " << r.train_seconds << " s ("
            << (r.train_seconds > 0 ? static_cast<double>(p.steps) / r.train_seconds : 0) << " steps/s), test accuracy "
            << r.test_accuracy << "\n\n"
            << p.table() << "\n";
  return p;
}
}  // namespace

int main(int argc, char** argv) try {
  cli::Args args("profile_bottleneck",
                 "Profiles the MLP and the CNN behind the same slow input pipeline and diagnoses each run.");
  auto batches = args.add<std::int64_t>("batches", 150, "training steps of each run");
  auto threads = args.add<int>("threads", 2, "threads for the matrix products");
  auto sigma = args.add<float>("sigma", 4.f, "elastic distortion: smoothing of the displacement field (pixels)");
  auto alpha = args.add<float>("alpha", 34.f, "elastic distortion: scale of the smoothed displacement field");
  auto data_dir = args.add<std::string>("data", data::default_fashion_mnist_dir, "Fashion-MNIST directory");
  args.parse(argc, argv);
  detail::require(*batches >= 1, "--batches must be >= 1");
  detail::require(*sigma > 0 && *alpha >= 0, "--sigma must be > 0 and --alpha >= 0");

  set_threads(*threads);
  auto [train, test] = data::fashion_mnist(*data_dir);
  const auto norm = data::Normalizer::fit(train);
  norm.apply(train);
  norm.apply(test);
  const ElasticDistortion distort{*sigma, *alpha};
  const auto machine = profile::Machine::probe();
  std::cout << "# Where the time goes: one loader thread with elastic distortion, two networks\n\nMachine: "
            << machine.gemm_flops_per_second / 1e9 << " GFLOP/s single-precision GEMM on " << *threads
            << " thread(s), " << machine.memory_bytes / 1e9 << " GB of memory.\n";

  using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 128>, nn::ReLU, nn::Linear<128, 10>>;
  std::string json = "{\"name\":\"profile_bottleneck\",\"runs\":[";
  auto report = [&](const char* label, const profile::Profile& p) {
    const auto d = profile::diagnose(p, machine);
    std::cout << d.report();
    json += std::string(json.back() == '[' ? "" : ",") + "{\"run\":" + fasttrain::json::quote(label) +
            ",\"bottleneck\":" + fasttrain::json::quote(profile::bottleneck_name(d.binding)) +
            ",\"data_wait_share\":" + fasttrain::json::number(p.share(p.phase(Phase::data))) +
            ",\"samples_per_second\":" + fasttrain::json::number(p.train_seconds > 0 ? p.samples / p.train_seconds : 0) +
            ",\"steps_per_second\":" + fasttrain::json::number(p.train_seconds > 0 ? p.steps / p.train_seconds : 0) + "}";
  };
  report("MLP", profiled_run<MLP>("MLP", train, test, distort, *batches, 0.05f));
  report("MLP + DataEchoing(2)",
         profiled_run<MLP>("MLP + DataEchoing(2)", train, test, distort, *batches, 0.05f,
                           methods::DataEchoing{{.factor = 2}}));
  report("CNN", profiled_run<examples::CNN>("CNN", train, test, distort, *batches / 3 + 1, 0.02f));
  std::cout << "\nFLOPs per sample of the CNN (forward and backward):\n\n"
            << eval::flops_markdown(eval::flops_table(examples::CNN{}, train.sample_shape)) << "\n";
  std::cout << json << "]}" << std::endl;
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "profile_bottleneck: error: %s\n", e.what());
  return 1;
}
