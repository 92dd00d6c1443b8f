// compile-cost: a BatchNorm CNN with BlurPool surgery and six more methods, a checkpoint and
// the profiler: a program that uses much of the library.
#include <fasttrain/fasttrain.hpp>
#include <iostream>
using namespace fasttrain;
using namespace fasttrain::literals;

using Net = nn::Sequential<nn::Conv2d<1, 32, 3, 1, 1>, nn::BatchNorm2d<32>, nn::ReLU, nn::MaxPool2d<2>,
                           nn::Conv2d<32, 64, 3, 1, 1>, nn::BatchNorm2d<64>, nn::ReLU, nn::MaxPool2d<2>,
                           nn::GlobalAvgPool, nn::Linear<64, 10>>;
using Blurred = methods::model_for<Net, methods::BlurPool<>>;

int main() {
  auto [train, test] = data::fashion_mnist();
  auto norm = data::Normalizer::fit(train);
  norm.apply(train), norm.apply(test);
  data::Loader loader(train, {.batch_size = 128, .seed = 1});
  Blurred model;
  model.reset_parameters(1);
  Trainer trainer{model,
                  optim::SGD{{.lr = 0.05f, .momentum = 0.9f, .nesterov = true}},
                  nn::SoftmaxCrossEntropy{},
                  methods::BlurPool<>{},
                  methods::EMA{},
                  methods::LabelSmoothing{0.1f},
                  methods::CutOut{},
                  methods::GradientClipping::by_norm(1.0f),
                  methods::Checkpoint{{.dir = "cnn_methods_ckpt", .every = 200_ba, .keep = 2}},
                  profile::Profiler{}};
  Result r = trainer.fit(loader, test, {.max_duration = 1_ep}, schedule::linear_warmup(0.5_ep) * schedule::cosine());
  std::cout << r.json() << "\n";
}
