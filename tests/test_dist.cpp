// dist::DataParallel over MPI, run by ctest as `mpiexec -n 2 fasttrain_dist_tests`: W ranks with
// batch b end with the weights one process with batch W*b ends with; the ranks hold bitwise
// the same weights; the speedup methods compose with it (GradientClipping by the global
// gradient's norm); bad setups are refused with a clear error on every rank; evaluation is
// sharded and its counts summed; each rank checkpoints to its own directory.
//
// Every rank runs every test case. A CHECK that fails on one rank must not skip a collective
// the others enter, so the cases use CHECK (not REQUIRE) after the first collective.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <fasttrain/dist/dist.hpp>
#include <fasttrain/fasttrain.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <tuple>
#include <vector>

#include "fixtures.hpp"

using namespace fasttrain;
using namespace fasttrain::literals;

namespace {

using Net = nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>>;
using BNNet = nn::Sequential<nn::Linear<4, 16>, nn::BatchNorm2d<16>, nn::ReLU, nn::Linear<16, 3>>;

FitOptions quiet(Duration d) {
  FitOptions o;
  o.max_duration = d;
  o.progress = ProgressMode::never;
  return o;
}

template <class Model>
std::vector<float> flat_parameters(Model& m) {
  std::vector<float> v;
  m.for_each_parameter([&](auto& p, auto&) { v.insert(v.end(), p.data(), p.data() + p.size()); });
  return v;
}

float max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  float d = a.size() == b.size() ? 0.f : INFINITY;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

// Whether every rank holds exactly rank 0's values.
bool same_on_every_rank(const dist::Communicator& comm, std::vector<float> v) {
  std::vector<float> root = v;
  comm.broadcast(root.data(), root.size(), 0);
  const std::int64_t equal = root == v ? 1 : 0;
  return comm.min(equal) == 1;
}

dist::Communicator world() { return dist::Communicator{}; }

const auto optimizer = optim::SGD{{.lr = 0.1f, .momentum = 0.9f}};

}  // namespace

TEST_CASE("DataParallel: 2 ranks with batch 64 take the steps of 1 process with batch 128") {
  const auto comm = world();
  if (comm.size() != 2) {
    MESSAGE("skipped: needs exactly 2 ranks (run under mpiexec -n 2)");
    return;
  }
  const auto train = fixtures::blobs(1000, 7), test = fixtures::blobs(300, 8);  // 7 full global batches + 104

  Net reference;
  reference.reset_parameters(3);
  data::Loader whole(train, {.batch_size = 128, .seed = 5, .prefetch = 0});
  Trainer one{reference, optimizer, nn::SoftmaxCrossEntropy{}};
  const Result r1 = one.fit(whole, test, quiet(3_ep));

  Net model;
  model.reset_parameters(3);
  data::Loader shard(train, {.batch_size = 64, .seed = 5, .prefetch = 2, .num_shards = 2, .shard = comm.rank()});
  Trainer two{model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm}};
  const Result r2 = two.fit(shard, test, quiet(3_ep));

  CHECK(r2.steps == r1.steps);
  CHECK(r2.samples * 2 == r1.samples);
  const float diff = max_abs_difference(flat_parameters(model), flat_parameters(reference));
  INFO("largest parameter difference: ", diff);
  CHECK(diff <= 1e-5f);  // the sums run in another order; nothing else differs
  CHECK(same_on_every_rank(comm, flat_parameters(model)));
  CHECK(r2.test_accuracy == doctest::Approx(r1.test_accuracy).epsilon(0.01));
  const auto& s = two.method<dist::DataParallel>().stats();
  CHECK(s.reductions == r2.steps);
  CHECK(s.bytes == r2.steps * static_cast<std::int64_t>(sizeof(float)) * model.parameter_count());
}

TEST_CASE("DataParallel: small buckets give the same weights as one bucket") {
  const auto comm = world();
  const auto train = fixtures::blobs(600, 9);
  std::vector<float> weights[2];
  for (int k = 0; k < 2; ++k) {
    Net model;
    model.reset_parameters(4);
    data::Loader shard(train, {.batch_size = 32, .seed = 2, .prefetch = 0, .num_shards = comm.size(),
                               .shard = comm.rank()});
    Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{},
              dist::DataParallel{comm, {.bucket_elements = k == 0 ? std::size_t{1} << 20 : std::size_t{7}}}};
    t.fit(shard, nullptr, quiet(2_ep));
    weights[k] = flat_parameters(model);
    if (k == 1 && comm.size() > 1) CHECK(t.method<dist::DataParallel>().stats().messages > 2 * t.time().batch);
  }
  CHECK(weights[0] == weights[1]);  // the same sums, element by element
}

TEST_CASE("DataParallel: ranks start from rank 0's weights and keep one set of BatchNorm statistics") {
  const auto comm = world();
  const auto train = fixtures::blobs(512, 11), test = fixtures::blobs(90, 12);
  BNNet model;
  model.reset_parameters(static_cast<std::uint64_t>(20 + comm.rank()));  // different on each rank
  data::Loader shard(train, {.batch_size = 32, .seed = 1, .prefetch = 0, .num_shards = comm.size(),
                             .shard = comm.rank()});
  Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm}};
  const Result r = t.fit(shard, test, quiet(2_ep));
  CHECK(same_on_every_rank(comm, flat_parameters(model)));
  auto& bn = model.layer<1>();
  std::vector<float> stats(bn.running_mean.data(), bn.running_mean.data() + bn.running_mean.size());
  stats.insert(stats.end(), bn.running_var.data(), bn.running_var.data() + bn.running_var.size());
  CHECK(same_on_every_rank(comm, stats));
  CHECK(r.test_accuracy > 0.9);
}

TEST_CASE("DataParallel composes with EMA, SAM, MixUp, LabelSmoothing and GradientClipping") {
  const auto comm = world();
  const auto train = fixtures::blobs(1000, 7), test = fixtures::blobs(300, 8);
  Net model;
  model.reset_parameters(3);
  data::Loader shard(train, {.batch_size = 64 / comm.size(), .seed = 5, .prefetch = 2,
                             .num_shards = comm.size(), .shard = comm.rank()});
  Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{},
            methods::GradientClipping::by_norm(1.f),
            methods::EMA{{.half_life = 20_ba}},
            methods::SAM{{.rho = 0.05f, .interval = 2}},
            methods::MixUp{{.alpha = 0.2f}},
            methods::LabelSmoothing{0.1f},
            dist::DataParallel{comm}};
  const Result r = t.fit(shard, test, quiet(3_ep));
  CHECK(std::isfinite(r.final_train_loss));
  CHECK(r.test_accuracy > 0.9);
  CHECK(t.method<methods::SAM>().sam_steps() > 0);
  CHECK(same_on_every_rank(comm, flat_parameters(model)));  // EMA's weights too: they are in the model now
}

TEST_CASE("DataParallel: GradientClipping clips the global gradient, as one process with the whole batch") {
  const auto comm = world();
  if (comm.size() != 2) {
    MESSAGE("skipped: needs exactly 2 ranks");
    return;
  }
  const auto train = fixtures::blobs(1000, 7);
  // A threshold below the gradients' norm: every step is clipped, so clipping each rank's own
  // gradient before the average would end elsewhere.
  Net reference;
  reference.reset_parameters(3);
  data::Loader whole(train, {.batch_size = 128, .seed = 5, .prefetch = 0});
  Trainer one{reference, optimizer, nn::SoftmaxCrossEntropy{}, methods::GradientClipping::by_norm(0.05f)};
  one.fit(whole, nullptr, quiet(2_ep));

  Net model;
  model.reset_parameters(3);
  data::Loader shard(train, {.batch_size = 64, .seed = 5, .prefetch = 0, .num_shards = 2, .shard = comm.rank()});
  // Listed first: only DataParallel's runs_before puts the clipping after the average.
  Trainer two{model, optimizer, nn::SoftmaxCrossEntropy{}, methods::GradientClipping::by_norm(0.05f),
              dist::DataParallel{comm}};
  two.fit(shard, nullptr, quiet(2_ep));
  const float diff = max_abs_difference(flat_parameters(model), flat_parameters(reference));
  INFO("largest parameter difference: ", diff);
  CHECK(diff <= 1e-5f);
}

TEST_CASE("DataParallel refuses a loader that is not sharded, and a budget in seconds") {
  const auto comm = world();
  const auto train = fixtures::blobs(256, 1);
  Net model;
  if (comm.size() > 1) {
    data::Loader whole(train, {.batch_size = 32, .prefetch = 0});
    Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm}};
    CHECK_THROWS_WITH_AS(t.fit(whole, nullptr, quiet(1_ep)), doctest::Contains("every rank would read the whole set"),
                         config_error);
  }
  data::Loader shard(train, {.batch_size = 32, .prefetch = 0, .num_shards = comm.size(), .shard = comm.rank()});
  Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm}};
  CHECK_THROWS_WITH_AS(t.fit(shard, nullptr, quiet(Duration{5.0, Unit::second})), doctest::Contains("budget in seconds"),
                       config_error);
  CHECK_THROWS_WITH_AS((dist::DataParallel{comm, {.bucket_elements = 0}}), doctest::Contains("bucket_elements"),
                       config_error);
}

TEST_CASE("DataParallel: ranks that disagree on the batches per epoch are told so") {
  const auto comm = world();
  if (comm.size() != 2) {
    MESSAGE("skipped: needs exactly 2 ranks");
    return;
  }
  const auto train = fixtures::blobs(512, 1);
  Net model;
  data::Loader shard(train, {.batch_size = comm.rank() == 0 ? 32 : 64, .prefetch = 0, .num_shards = 2,
                             .shard = comm.rank()});
  Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm}};
  CHECK_THROWS_WITH_AS(t.fit(shard, nullptr, quiet(1_ep)),
                       doctest::Contains("the ranks disagree on the number of batches per epoch (from 4 to 8"),
                       config_error);
}

namespace {
// Records, at eval_end, the samples this process evaluated and the accuracy it was given.
struct EvalProbe {
  static constexpr taxonomy tag{component::none, action::retrofit};
  using events = fasttrain::events<event::eval_end>;
  std::vector<std::int64_t> samples;
  template <class Ctx>
  void on_eval_end(Ctx& ctx) {
    samples.push_back(ctx.samples);
  }
};

template <class Model>
std::vector<float> flat_statistics(Model& m) {
  std::vector<float> v;
  nn::visit_layers(m, [&](auto& l) {
    if constexpr (nn::RunningStatistics<decltype(l)>) {
      v.insert(v.end(), l.running_mean.data(), l.running_mean.data() + l.running_mean.size());
      v.insert(v.end(), l.running_var.data(), l.running_var.data() + l.running_var.size());
    }
  });
  return v;
}
}  // namespace

TEST_CASE("DataParallel: evaluation is sharded over the ranks and the counts summed; training is unchanged") {
  const auto comm = world();
  const auto train = fixtures::blobs(512, 11), test = fixtures::blobs(91, 12);  // 91: shards of 45 and 46
  auto run = [&](Duration eval_interval) {
    BNNet model;
    model.reset_parameters(3);
    data::Loader shard(train, {.batch_size = 32, .seed = 1, .prefetch = 0, .num_shards = comm.size(),
                               .shard = comm.rank()});
    Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm}, EvalProbe{}};
    FitOptions o = quiet(2_ep);
    o.eval_interval = eval_interval;
    const Result r = t.fit(shard, test, o);
    const auto samples = t.method<EvalProbe>().samples;
    const auto evaluated = t.method<dist::DataParallel>().stats().eval_samples;
    // The whole test set's accuracy, by this process alone, with the model every rank holds.
    const double whole = evaluate_accuracy(model, test);
    const double again = t.evaluate(test);
    return std::tuple{r, samples, evaluated, whole, again, flat_parameters(model), flat_statistics(model)};
  };
  const auto [r, samples, evaluated, whole, again, weights, stats] = run(3_ba);  // mid-epoch evaluations too
  const auto [plain, plain_samples, plain_evaluated, plain_whole, plain_again, plain_weights, plain_stats] = run(0_ep);
  const auto [lo, hi] = shard_range(test.size(), comm.rank(), comm.size());
  CHECK(samples.size() == r.history.size());
  for (const auto n : samples) CHECK(n == hi - lo);  // each rank evaluated its shard only
  CHECK(evaluated == static_cast<std::int64_t>(samples.size()) * (hi - lo));
  if (comm.size() == 2) CHECK(hi - lo == (comm.rank() == 0 ? 45 : 46));
  // The counts, summed, are the whole set's accuracy, the same on every rank.
  CHECK(r.test_accuracy == whole);
  CHECK(again == whole);
  std::vector<float> accuracies;
  for (const auto& h : r.history) accuracies.push_back(static_cast<float>(h.test_accuracy));
  CHECK(same_on_every_rank(comm, accuracies));
  CHECK(same_on_every_rank(comm, stats));  // one model at the end (statistics averaged at fit_end)
  // Evaluating mid-epoch (with the ranks' statistics averaged for it, then put back) leaves
  // the training as it was.
  CHECK(r.history.size() > plain.history.size());
  CHECK(weights == plain_weights);
  CHECK(stats == plain_stats);
  CHECK(r.test_accuracy == plain.test_accuracy);
}

TEST_CASE("methods::Checkpoint under DataParallel: each rank writes its own directory; resuming needs as many ranks") {
  namespace fs = std::filesystem;
  const auto comm = world();
  const auto train = fixtures::blobs(512, 11), test = fixtures::blobs(90, 12);
  const std::string dir = (fs::temp_directory_path() / "fasttrain_dist_checkpoints").string();
  if (comm.rank() == 0) fs::remove_all(dir);
  comm.barrier();
  const data::LoaderOptions lo{.batch_size = 32, .shuffle = true, .seed = 1, .prefetch = 0,
                               .num_shards = comm.size(), .shard = comm.rank()};
  FitOptions o = quiet(2_ep);  // 16 steps on 2 ranks: checkpoints at 5, 10, 15
  o.eval_interval = 5_ba;
  BNNet ref_model;
  ref_model.reset_parameters(3);
  data::Loader loader(train, lo);
  Trainer ref{ref_model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm},
              methods::Checkpoint{{.dir = dir, .every = 5_ba, .keep = 0}}};
  const Result full = ref.fit(loader, test, o);
  const std::string mine = io::rank_directory(dir, comm.rank());
  CHECK(ref.method<methods::Checkpoint>().directory() == (comm.size() > 1 ? mine : dir));
  if (comm.size() > 1) {
    CHECK(io::list_checkpoints(dir).empty());  // nothing in the shared directory itself
    CHECK(io::list_checkpoints(mine).size() == 3);
  }
  comm.barrier();
  // Rank 1 lost its newest file (killed while writing it, say): every rank resumes from the
  // newest step all of them have.
  if (comm.size() > 1 && comm.rank() == 1) fs::remove(io::checkpoint_path(mine, "ckpt", 15));
  comm.barrier();
  const auto last = dist::latest_checkpoint(comm, dir);
  CHECK(last.has_value());
  if (comm.size() > 1) CHECK(last.value_or("") == io::checkpoint_path(mine, "ckpt", 10));
  BNNet model;
  model.reset_parameters(99);
  data::Loader loader2(train, lo);
  Trainer t{model, optimizer, nn::SoftmaxCrossEntropy{}, dist::DataParallel{comm},
            methods::Checkpoint{{.dir = dir + "/again", .every = 5_ba}}};
  FitOptions resume = o;
  resume.resume_from = last.value_or("");
  const Result r = t.fit(loader2, test, resume);
  CHECK(flat_parameters(model) == flat_parameters(ref_model));
  CHECK(flat_statistics(model) == flat_statistics(ref_model));
  CHECK(r.history.size() == full.history.size());
  for (std::size_t i = 0; i < std::min(r.history.size(), full.history.size()); ++i) {
    CHECK(r.history[i].step == full.history[i].step);
    CHECK(r.history[i].test_accuracy == full.history[i].test_accuracy);
    CHECK(r.history[i].train_loss == full.history[i].train_loss);
  }
  // Resuming with another number of ranks (here: each rank alone) is refused, naming both.
  if (comm.size() > 1) {
    BNNet alone_model;
    data::Loader loader3(train, lo);
    Trainer alone{alone_model, optimizer, nn::SoftmaxCrossEntropy{},
                  dist::DataParallel{dist::Communicator(MPI_COMM_SELF)},
                  methods::Checkpoint{{.dir = dir + "/alone", .every = 5_ba}}};
    CHECK_THROWS_WITH_AS(alone.fit(loader3, test, resume),
                         doctest::Contains(fasttrain::detail::cat("DataParallel/ranks = ", comm.size(),
                                                                  " but this run has 1").c_str()),
                         config_error);
  }
  comm.barrier();
  if (comm.rank() == 0) fs::remove_all(dir);
}

int main(int argc, char** argv) {
  dist::Environment env(argc, argv);
  const dist::Communicator comm;
  doctest::Context ctx(argc, argv);
  const int failed = ctx.run();
  // Every rank's verdict counts: the job passes only if no rank failed.
  const auto worst = comm.max(failed != 0 ? 1 : 0);
  return ctx.shouldExit() ? failed : static_cast<int>(worst);
}
