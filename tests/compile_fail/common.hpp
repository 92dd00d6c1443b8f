// Shared by the compile-fail tests of the Trainer: a minimal model, loss and data.
#pragma once
#include <fasttrain/fasttrain.hpp>

namespace cf {
using namespace fasttrain;
using Net = nn::Sequential<nn::Linear<2, 2>>;

template <class... Methods>
int run(Methods... ms) {
  data::Dataset ds;
  ds.features = cpu::eigen::matrix::Zero(2, 4);
  ds.labels = {0, 1, 0, 1};
  ds.sample_shape = Shape(2);
  ds.num_classes = 2;
  data::Loader loader(ds, {.batch_size = 2, .prefetch = 0});
  Net net;
  Trainer trainer{net, optim::SGD{}, nn::SoftmaxCrossEntropy{}, ms...};
  FitOptions o;
  o.max_duration = Duration{1, Unit::batch};
  o.progress = ProgressMode::never;
  return trainer.fit(loader, nullptr, o).steps == 1 ? 0 : 1;
}
}  // namespace cf
