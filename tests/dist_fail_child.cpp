// A 2-rank job in which rank 1 fails at step 3: dist::run must end the whole job with the
// failing rank's message instead of leaving rank 0 waiting in its next allreduce.
// tests/CMakeLists.txt runs it under mpiexec with a timeout and checks the output.
#include <fasttrain/dist/dist.hpp>
#include <fasttrain/fasttrain.hpp>

#include <stdexcept>

#include "fixtures.hpp"

using namespace fasttrain;
using namespace fasttrain::literals;

namespace {
// Throws on one rank at one step, as a bug or a bad file on one node would.
struct FailOnRank {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::batch_end>;
  int rank;
  template <class Ctx>
  void on_batch_end(Ctx& ctx) {
    if (rank == 1 && ctx.time.batch == 3) throw std::runtime_error("injected failure at step 3");
  }
};
}  // namespace

int main(int argc, char** argv) {
  return dist::run(argc, argv, [](dist::Communicator& comm) {
    const auto train = fixtures::blobs(4000, 1);
    nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>> model;
    data::Loader shard(train, {.batch_size = 16, .prefetch = 2, .num_shards = comm.size(), .shard = comm.rank()});
    Trainer t{model, optim::SGD{{.lr = 0.1f}}, nn::SoftmaxCrossEntropy{}, FailOnRank{comm.rank()},
              dist::DataParallel{comm}};
    FitOptions o;
    o.max_duration = 1000_ep;  // would take minutes: the test's timeout catches a hang
    o.progress = ProgressMode::never;
    t.fit(shard, nullptr, o);
  });
}
