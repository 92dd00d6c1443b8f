// Compile-fail: a recipe with a surgery method (here Factorize) needs a model whose type the
// method rewrote (methods::model_for); a plain network would silently train without it.
#include "common.hpp"

int main() {
  using namespace fasttrain;
  using Rule = methods::Factorize<1, 1>;
#ifdef FASTTRAIN_CF_FAIL
  using Model = cf::Net;
#else
  using Model = methods::model_for<cf::Net, Rule>;
#endif
  data::Dataset ds;
  ds.features = cpu::eigen::matrix::Zero(2, 4);
  ds.labels = {0, 1, 0, 1};
  ds.sample_shape = Shape(2);
  ds.num_classes = 2;
  data::Loader loader(ds, {.batch_size = 2, .prefetch = 0});
  Model net;
  Trainer trainer{net, optim::SGD{}, nn::SoftmaxCrossEntropy{}, Rule{}};
  FitOptions o;
  o.max_duration = Duration{1, Unit::batch};
  o.progress = ProgressMode::never;
  return trainer.fit(loader, nullptr, o).steps == 1 ? 0 : 1;
}
