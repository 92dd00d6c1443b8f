// The child process of the kill/resume test (test_io.cpp): trains a small CNN with
// BatchNorm, Dropout, momentum SGD and stateful methods (MixUp and CutOut draw from their
// own generators; GradientNoise below too), writing a checkpoint every 10
// batches. When <dir> already holds a checkpoint it resumes from the newest one. At the end
// it writes the model's and optimizer's state (io::StateWriter bytes), the final loss and
// accuracy and every record of the history (evaluations every 20 batches, so every other
// checkpoint falls on an evaluation, and at the end of each epoch) to <out>, for a bitwise
// comparison with an uninterrupted run.
//
//   kill_resume_child <dir> <out> [threads] [epochs]
#include <cstdio>
#include <fasttrain/fasttrain.hpp>
#include <fstream>
#include <iostream>
#include <string>

#include "fixtures.hpp"

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;

namespace {

// Adds seeded Gaussian noise to the first layer's weight gradient: a method whose state
// (its generator and step count) must survive the kill for the results to match.
struct GradientNoise {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::after_backward>;
  static std::string name() { return "GradientNoise"; }
  Rng rng{42};
  std::int64_t steps = 0;
  template <class Ctx>
  void on_after_backward(Ctx& ctx) {
    bool first = true;
    ctx.model.for_each_parameter([&](auto&, auto& g) {
      if (!first) return;
      first = false;
      for (Eigen::Index i = 0; i < g.size(); ++i) g.data()[i] += rng.normal(0.f, 1e-3f);
    });
    ++steps;
  }
  template <class Ar>
  void state(Ar& ar) {
    ar("rng", rng);
    ar("steps", steps);
  }
};

using Net = nn::Sequential<nn::Conv2d<1, 8, 3, 1, 1>, nn::BatchNorm2d<8>, nn::ReLU, nn::MaxPool2d<2>, nn::Flatten,
                           nn::Dropout, nn::Linear<512, 128>, nn::ReLU, nn::Linear<128, 3>>;

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::cerr << "usage: kill_resume_child <dir> <out> [threads] [epochs]\n";
    return 2;
  }
  const std::string dir = argv[1], out = argv[2];
  set_threads(argc > 3 ? std::stoi(argv[3]) : 2);
  const double epochs = argc > 4 ? std::stod(argv[4]) : 3.0;

  const data::Dataset train = fixtures::squares(3072, 1), test = fixtures::squares(512, 2);
  data::Loader loader(train, {.batch_size = 32, .shuffle = true, .seed = 7});
  Net net(nn::Conv2d<1, 8, 3, 1, 1>{}, nn::BatchNorm2d<8>{}, nn::ReLU{}, nn::MaxPool2d<2>{}, nn::Flatten{},
          nn::Dropout(0.2f), nn::Linear<512, 128>{}, nn::ReLU{}, nn::Linear<128, 3>{});
  net.reset_parameters(11);
  Trainer trainer{net,
                  optim::SGD{{.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-4f}},
                  nn::SoftmaxCrossEntropy{},
                  methods::Checkpoint{{.dir = dir, .every = 10_ba, .keep = 2}},
                  methods::MixUp{{.alpha = 0.4f, .seed = 1}},
                  methods::CutOut{{.length = 0.25f, .seed = 2}},
                  methods::LabelSmoothing{0.1f},
                  methods::GradientClipping::by_norm(5.f),
                  GradientNoise{}};
  FitOptions opt{.max_duration = Duration(epochs, Unit::epoch), .eval_interval = 20_ba,
                 .progress = ProgressMode::never};
  if (auto last = io::latest_checkpoint(dir)) opt.resume_from = *last;
  const Result r = trainer.fit(loader, test, opt, schedule::linear_warmup(0.2_dur) * schedule::cosine());

  io::StateWriter w;
  net.state(w);
  trainer.optimizer().state(w);
  std::ofstream f(out, std::ios::binary);
  f << w.bytes();
  f << "\nloss " << r.final_train_loss << " accuracy " << r.test_accuracy << " steps " << r.steps << "\n";
  f << std::hexfloat;
  for (const auto& h : r.history)
    f << "history epoch " << h.epoch << " step " << h.step << " epochs " << h.epochs << " loss " << h.train_loss
      << " accuracy " << h.test_accuracy << "\n";
  if (!f.flush()) {
    std::cerr << "kill_resume_child: cannot write " << out << "\n";
    return 1;
  }
  std::cout << r.json() << "\n";
  return 0;
} catch (const std::exception& e) {
  std::cerr << "kill_resume_child: error: " << e.what() << "\n";
  return 1;
}
