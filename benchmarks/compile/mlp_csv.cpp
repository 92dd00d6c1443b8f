// compile-cost: what a first program looks like. An MLP on a CSV file, one Trainer, no methods.
//   mlp_csv FILE.csv   (label in column 0, every other column a feature; 784 features, 10 classes)
#include <fasttrain/fasttrain.hpp>
#include <iostream>
using namespace fasttrain;
using namespace fasttrain::literals;

using MLP = nn::Sequential<nn::Linear<784, 256>, nn::ReLU, nn::Linear<256, 10>>;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: mlp_csv FILE.csv\n";
    return 2;
  }
  data::Dataset train = data::read_csv(argv[1], {.num_classes = 10});
  data::Loader loader(train, {.batch_size = 128, .seed = 1});
  MLP model;
  model.reset_parameters(1);
  Trainer trainer{model, optim::SGD{{.lr = 0.05f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}};
  Result r = trainer.fit(loader, train, {.max_duration = 2_ep});
  std::cout << r.json() << "\n";
}
