// Reliability: state archives, the checkpoint file format and its refusals, atomic
// writes, resuming bitwise-identically (in-process and after SIGKILL of a child process),
// determinism, and divergence detection and rollback.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fasttrain/fasttrain.hpp>

#include "fixtures.hpp"
#include <fstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;
namespace fs = std::filesystem;

namespace {

// A fresh, empty directory under the system's temporary directory.
std::string fresh_dir(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("fasttrain_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

template <class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

data::Dataset blobs(std::int64_t n, std::uint64_t seed) { return fixtures::blobs(n, seed, 2.f, 1.f); }

using Net = nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Dropout, nn::Linear<16, 3>>;

// A method with state of its own: seeded noise on the last layer's bias gradient.
struct Jitter {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::after_backward>;
  static std::string name() { return "Jitter"; }
  Rng rng{5};
  template <class Ctx>
  void on_after_backward(Ctx& ctx) {
    ctx.model.for_each_parameter([&](auto&, auto& g) {
      if (g.cols() == 1 && g.rows() == 3) g(0, 0) += rng.normal(0.f, 0.01f);
    });
  }
  template <class Ar>
  void state(Ar& ar) {
    ar("rng", rng);
  }
};

// Makes the first gradient NaN at the given steps (the loss stays finite).
struct PoisonGradient {
  static constexpr taxonomy tag{component::optimization, action::retrofit};
  using events = fasttrain::events<event::after_backward>;
  std::vector<std::int64_t> at{}, done{};  // not saved in checkpoints: a replayed step is clean
  std::int64_t fired() const { return static_cast<std::int64_t>(done.size()); }
  template <class Ctx>
  void on_after_backward(Ctx& ctx) {
    const auto step = ctx.time.batch;
    if (std::find(at.begin(), at.end(), step) == at.end() || std::find(done.begin(), done.end(), step) != done.end())
      return;
    done.push_back(step);
    bool first = true;
    ctx.model.for_each_parameter([&](auto&, auto& g) {
      if (first) g(0, 0) = std::nanf("");
      first = false;
    });
  }
};

std::vector<B::matrix> weights_of(Net& net) {
  std::vector<B::matrix> w;
  net.for_each_parameter([&](auto& p, auto&) { w.push_back(p); });
  return w;
}

template <class... Ms>
auto make_trainer(Net& net, Ms... ms) {
  return Trainer{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f, .nesterov = true}}, nn::SoftmaxCrossEntropy{},
                 std::move(ms)...};
}

io::CheckpointData small_checkpoint() {
  io::StateWriter w;
  B::matrix m(2, 3);
  m << 1, 2, 3, 4, 5, 6;
  w("m", m);
  w("n", std::int64_t{7});
  io::CheckpointData ck;
  ck.add("model", w.take());
  ck.add("trainer", std::string("abc"));
  return ck;
}

}  // namespace

TEST_CASE("StateWriter / StateReader: every value type round-trips exactly") {
  B::matrix m = B::matrix::Random(3, 5), m2;
  std::vector<B::matrix> v{B::matrix::Random(2, 2), B::matrix(0, 0)}, v2;
  Rng rng(3);
  (void)rng.normal();  // leaves a cached second deviate: part of the state
  std::string text = "caf\xc3\xa9", text2;
  std::int64_t i = -42, i2 = 0;
  std::uint8_t u = 200, u2 = 0;
  double d = 0.1, d2 = 0;
  float f = std::nextafter(1.f, 2.f), f2 = 0;
  bool b = true, b2 = false;
  io::StateWriter w;
  {
    auto s = w.scope("outer");
    w("m", m);
    w("v", v);
    w("rng", rng);
    w("text", text);
  }
  w("i", i);
  w("u", u);
  w("d", d);
  w("f", f);
  w("b", b);
  Rng rng2(99);
  io::StateReader r(w.bytes(), "test");
  {
    auto s = r.scope("outer");
    r("m", m2);
    r("v", v2);
    r("rng", rng2);
    r("text", text2);
  }
  r("i", i2);
  r("u", u2);
  r("d", d2);
  r("f", f2);
  r("b", b2);
  r.finish();
  CHECK(m2 == m);
  REQUIRE(v2.size() == 2);
  CHECK(v2[0] == v[0]);
  CHECK(v2[1].size() == 0);
  CHECK(text2 == text);
  CHECK(i2 == i);
  CHECK(u2 == u);
  CHECK(d2 == d);
  CHECK(f2 == f);
  CHECK(b2);
  for (int k = 0; k < 5; ++k) CHECK(rng2.normal() == rng.normal());
}

TEST_CASE("StateReader: a record from another model or recipe is refused by name, type and shape") {
  io::StateWriter w;
  w("weight", B::matrix(B::matrix::Zero(4, 3)));
  w.config("lr", 0.1f);
  SUBCASE("another name") {
    io::StateReader r(w.bytes(), "x.ftc");
    B::matrix m;
    CHECK(message_of([&] { r("bias", m); }).find("holds 'weight' where this run expects 'bias'") != std::string::npos);
  }
  SUBCASE("another shape") {
    io::StateReader r(w.bytes(), "x.ftc");
    B::matrix m(3, 3);
    const auto msg = message_of([&] { r("weight", m); });
    CHECK(msg.find("weight as 4x3 but this run's is 3x3") != std::string::npos);
  }
  SUBCASE("another type") {
    io::StateReader r(w.bytes(), "x.ftc");
    std::int64_t n = 0;
    CHECK(message_of([&] { r("weight", n); }).find("is stored as a float matrix") != std::string::npos);
  }
  SUBCASE("another hyperparameter") {
    io::StateReader r(w.bytes(), "x.ftc");
    B::matrix m;
    r("weight", m);
    CHECK_THROWS_AS(r.config("lr", 0.2f), config_error);
  }
  SUBCASE("records left over") {
    io::StateReader r(w.bytes(), "x.ftc");
    B::matrix m;
    r("weight", m);
    CHECK(message_of([&] { r.finish(); }).find("starting with 'lr'") != std::string::npos);
  }
  SUBCASE("every truncation is a clear error, never a crash") {
    for (std::size_t n = 0; n < w.bytes().size(); ++n) {
      io::StateReader r(std::string_view(w.bytes()).substr(0, n), "x.ftc");
      B::matrix m;
      float lr = 0.1f;
      CHECK_THROWS_AS((r("weight", m), r.config("lr", lr), r.finish()), std::exception);
    }
  }
}

TEST_CASE("checkpoint file: round trip, and corrupt, truncated and wrong-version files are refused saying which") {
  const io::CheckpointData ck = small_checkpoint();
  const std::string bytes = io::encode_checkpoint(ck);
  const io::CheckpointData back = io::decode_checkpoint(bytes, "good.ftc");
  REQUIRE(back.sections.size() == 2);
  CHECK(back.sections == ck.sections);

  auto refused = [](const std::string& b) { return message_of([&] { (void)io::decode_checkpoint(b, "bad.ftc"); }); };
  SUBCASE("not a checkpoint") {
    CHECK(refused(std::string(40, 'x')).find("not a fasttrain checkpoint") != std::string::npos);
  }
  SUBCASE("another format version") {
    std::string b = bytes;
    // The next version, with a valid header CRC so that the version is what is reported.
    b[8] = static_cast<char>(io::checkpoint_version + 1);
    std::uint32_t crc = io::crc32_of(std::string_view(b).substr(0, 16));
    std::memcpy(&b[16], &crc, 4);
    auto msg = refused(b);
    CHECK(msg.find(fasttrain::detail::cat("format version ", io::checkpoint_version + 1)) != std::string::npos);
    CHECK(msg.find("newer fasttrain") != std::string::npos);
    // A file of version 1 (before the trainer section held epoch_batch_size) is refused too.
    b[8] = 1;
    crc = io::crc32_of(std::string_view(b).substr(0, 16));
    std::memcpy(&b[16], &crc, 4);
    msg = refused(b);
    CHECK(msg.find("format version 1") != std::string::npos);
    CHECK(msg.find("older fasttrain") != std::string::npos);
  }
  SUBCASE("a flipped bit in a section names the section") {
    for (const char* name : {"model", "trainer"}) {
      std::string b = bytes;
      const auto at = b.rfind(name) + std::strlen(name) + 12 + 1;  // a payload byte of that section
      b[at] = static_cast<char>(b[at] ^ 0x10);
      CHECK(refused(b).find(std::string("section '") + name + "' is corrupt") != std::string::npos);
    }
  }
  SUBCASE("a flipped bit in the header") {
    std::string b = bytes;
    b[13] = static_cast<char>(b[13] ^ 1);
    CHECK(refused(b).find("corrupt header") != std::string::npos);
  }
  SUBCASE("every truncation, and trailing bytes") {
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      const auto msg = refused(bytes.substr(0, n));
      CHECK_MESSAGE((msg.find("truncated") != std::string::npos || msg.find("not a fasttrain") != std::string::npos),
                    n, ": ", msg);
    }
    CHECK(refused(bytes + "z").find("after its last section") != std::string::npos);
  }
}

TEST_CASE("write_checkpoint is atomic; latest_checkpoint skips what does not read back") {
  const std::string dir = fresh_dir("atomic");
  const auto ck = small_checkpoint();
  io::write_checkpoint(io::checkpoint_path(dir, "ckpt", 10), ck);
  io::write_checkpoint(io::checkpoint_path(dir, "ckpt", 20), ck);
  // What a kill in the middle of a write leaves: a temporary file, never a torn .ftc.
  std::ofstream(io::checkpoint_path(dir, "ckpt", 30) + ".tmp.123") << "half a checkpoint";
  CHECK(io::list_checkpoints(dir).size() == 2);
  CHECK(*io::latest_checkpoint(dir) == io::checkpoint_path(dir, "ckpt", 20));
  // A damaged newest file (a disk error, a copy gone wrong) is skipped.
  std::ofstream(io::checkpoint_path(dir, "ckpt", 40), std::ios::binary) << "garbage";
  CHECK(*io::latest_checkpoint(dir) == io::checkpoint_path(dir, "ckpt", 20));
  CHECK_FALSE(io::latest_checkpoint(dir + "/missing"));
  CHECK_THROWS_AS(io::read_checkpoint(dir + "/missing.ftc"), data_error);
  fs::remove_all(dir);
}

TEST_CASE("determinism: the same seed and thread count give bitwise-identical weights") {
  const auto train = blobs(300, 1);
  auto run = [&] {
    data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});
    Net net;
    net.reset_parameters(3);
    auto t = make_trainer(net, methods::LabelSmoothing{0.1f}, Jitter{});
    (void)t.fit(loader, nullptr, {.max_duration = 2_ep, .progress = ProgressMode::never}, schedule::cosine());
    return weights_of(net);
  };
  const auto a = run(), b = run();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
}

TEST_CASE("resume: a run continued from any of its checkpoints ends bitwise identical") {
  const auto train = blobs(300, 1), test = blobs(90, 9);
  const std::string dir = fresh_dir("resume");
  data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});  // 19 batches, the last short
  // Evaluations every 14 steps: every other checkpoint (every 7) falls on one, which a
  // resumed run used to lose (the checkpoint is written at batch_end, before it).
  const FitOptions opt{.max_duration = 3_ep, .eval_interval = 14_ba, .progress = ProgressMode::never};
  const auto sched = schedule::linear_warmup(0.3_dur) * schedule::cosine();
  Net ref_net(nn::Linear<4, 16>{}, nn::ReLU{}, nn::Dropout(0.3f), nn::Linear<16, 3>{});
  ref_net.reset_parameters(4);
  auto ref = make_trainer(ref_net, methods::Checkpoint{{.dir = dir, .every = 7_ba, .keep = 0}},
                          methods::GradientClipping::by_norm(1.f), Jitter{});
  const Result full = ref.fit(loader, test, opt, sched);
  const auto expected = weights_of(ref_net);
  const auto all = io::list_checkpoints(dir);
  REQUIRE(all.size() == 57 / 7);  // steps 7, 14, ..., 56 of 57
  CHECK(all.front().first == 7);
  for (const auto& [at, path] : all) {
    const std::int64_t step = at;  // clang 14 cannot capture a structured binding
    CAPTURE(step);
    Net net(nn::Linear<4, 16>{}, nn::ReLU{}, nn::Dropout(0.3f), nn::Linear<16, 3>{});
    net.reset_parameters(99);  // different weights: the checkpoint must replace them all
    auto t = make_trainer(net, methods::Checkpoint{{.dir = dir + "/again", .every = 7_ba}},
                          methods::GradientClipping::by_norm(1.f), Jitter{});
    FitOptions o = opt;
    o.resume_from = path;
    const Result r = t.fit(loader, test, o, sched);
    const auto got = weights_of(net);
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == expected[i]);
    CHECK(r.steps == full.steps);
    CHECK(r.final_train_loss == full.final_train_loss);
    CHECK(r.history.size() == full.history.size());
    for (std::size_t i = 0; i < std::min(r.history.size(), full.history.size()); ++i) {
      CAPTURE(i);
      const EvalRecord &a = r.history[i], &b = full.history[i];
      CHECK(a.epoch == b.epoch);
      CHECK(a.step == b.step);
      CHECK(a.epochs == b.epochs);
      CHECK(a.train_loss == b.train_loss);
      CHECK(a.test_accuracy == b.test_accuracy);
    }
    CHECK(r.resumed_from == path);
  }
  fs::remove_all(dir);
}

namespace {
// Trains 3 epochs with `ms` and checkpoints every 5 steps, then resumes from every
// checkpoint: each resumed run must end with bitwise the same weights and history.
template <class... Ms>
void check_resume_from_every_checkpoint(const std::string& name, Ms... ms) {
  const auto train = blobs(200, 1), test = blobs(90, 9);
  const std::string dir = fresh_dir(name);
  data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});
  const FitOptions opt{.max_duration = 3_ep, .progress = ProgressMode::never};
  auto make_net = [] {
    Net net(nn::Linear<4, 16>{}, nn::ReLU{}, nn::Dropout(0.3f), nn::Linear<16, 3>{});
    return net;
  };
  Net ref_net = make_net();
  ref_net.reset_parameters(4);
  auto ref = make_trainer(ref_net, methods::Checkpoint{{.dir = dir, .every = 5_ba, .keep = 0}}, ms...);
  const Result full = ref.fit(loader, test, opt, schedule::cosine());
  const auto expected = weights_of(ref_net);
  const auto all = io::list_checkpoints(dir);
  REQUIRE(all.size() >= 4);  // every 5 of at least 29 steps
  for (const auto& [at, path] : all) {
    const std::int64_t step = at;  // clang 14 cannot capture a structured binding
    CAPTURE(step);
    Net net = make_net();
    net.reset_parameters(99);
    auto t = make_trainer(net, methods::Checkpoint{{.dir = dir + "/again", .every = 5_ba}}, ms...);
    FitOptions o = opt;
    o.resume_from = path;
    const Result r = t.fit(loader, test, o, schedule::cosine());
    const auto got = weights_of(net);
    for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == expected[i]);
    CHECK(r.steps == full.steps);
    REQUIRE(r.history.size() == full.history.size());
    for (std::size_t i = 0; i < r.history.size(); ++i) CHECK(r.history[i].test_accuracy == full.history[i].test_accuracy);
  }
  fs::remove_all(dir);
}
}  // namespace

TEST_CASE("resume: methods with data-steering or averaged state (pruned epochs, echoes, selection, EMA, batch sizes) resume exactly") {
  check_resume_from_every_checkpoint(
      "resume_data_methods", methods::DataPruning{{.fraction = 0.4f, .score_epoch = 1}},
      methods::DataEchoing{{.factor = 2}},
      methods::SelectiveBackprop{{.start = 0.f, .keep = 0.5f, .interrupt = 3, .seed = 7}});
  check_resume_from_every_checkpoint("resume_forgetting",
                                     methods::DataPruning{{.fraction = 0.4f, .score = methods::ExampleScore::forgetting,
                                                           .score_epoch = 1}});
  check_resume_from_every_checkpoint("resume_ema", methods::EMA{{.half_life = Duration(4, Unit::batch)}});
  check_resume_from_every_checkpoint(
      "resume_batch_size_warmup",
      methods::BatchSizeWarmup{{.initial = 0.25f, .warmup = 2_ep, .multiple = 4,
                                .lr_scaling = methods::BatchSizeWarmup::LRScaling::linear}});
  check_resume_from_every_checkpoint("resume_curriculum",
                                     methods::Curriculum{{.start = 0.3f, .full_at = 0.9f, .score_epoch = 1}},
                                     methods::DataEchoing{{.factor = 3}});
}

TEST_CASE("io::load_model restores a checkpoint's model alone, for evaluation") {
  const auto train = blobs(120, 1);
  const std::string dir = fresh_dir("load_model");
  data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});
  Net net;
  net.reset_parameters(1);
  auto t = make_trainer(net);
  (void)t.fit(loader, nullptr, {.max_duration = 1_ep, .progress = ProgressMode::never});
  t.save_checkpoint(dir + "/m.ftc");
  Net copy;
  copy.reset_parameters(2);
  io::load_model(dir + "/m.ftc", copy);
  const auto a = weights_of(net), b = weights_of(copy);
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == b[i]);
  CHECK(evaluate_accuracy(copy, train) == evaluate_accuracy(net, train));
  nn::Sequential<nn::Linear<4, 16>, nn::ReLU, nn::Linear<16, 3>> other;  // no Dropout: records differ
  CHECK_THROWS_AS(io::load_model(dir + "/m.ftc", other), config_error);
  fs::remove_all(dir);
}

TEST_CASE("resume: a checkpoint of another configuration is refused, naming the difference") {
  const auto train = blobs(120, 1);
  const std::string dir = fresh_dir("mismatch");
  data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});
  Net net;
  auto t = make_trainer(net, methods::LabelSmoothing{0.1f});
  (void)t.fit(loader, nullptr, {.max_duration = 3_ba, .progress = ProgressMode::never});
  const std::string path = dir + "/one.ftc";
  t.save_checkpoint(path);

  SUBCASE("another hyperparameter of a method") {
    Net n2;
    auto t2 = make_trainer(n2, methods::LabelSmoothing{0.2f});
    const auto msg = message_of([&] {
      (void)t2.fit(loader, nullptr, {.max_duration = 5_ba, .progress = ProgressMode::never, .resume_from = path});
    });
    CHECK(msg.find("0.LabelSmoothing/smoothing = 0.1") != std::string::npos);
  }
  SUBCASE("another model") {
    nn::Sequential<nn::Linear<4, 8>, nn::ReLU, nn::Linear<8, 3>> other;
    Trainer t2{other, optim::SGD{{.lr = 0.1f, .momentum = 0.9f, .nesterov = true}}, nn::SoftmaxCrossEntropy{},
               methods::LabelSmoothing{0.1f}};
    CHECK_THROWS_AS(
        (void)t2.fit(loader, nullptr, {.max_duration = 5_ba, .progress = ProgressMode::never, .resume_from = path}),
        config_error);
  }
  SUBCASE("another loader seed") {
    data::Loader other(train, {.batch_size = 16, .shuffle = true, .seed = 3});
    Net n2;
    auto t2 = make_trainer(n2, methods::LabelSmoothing{0.1f});
    const auto msg = message_of([&] {
      (void)t2.fit(other, nullptr, {.max_duration = 5_ba, .progress = ProgressMode::never, .resume_from = path});
    });
    CHECK(msg.find("seed=2") != std::string::npos);
    CHECK(msg.find("seed=3") != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("methods::Checkpoint saves on multiples of its period and keeps the newest k") {
  const auto train = blobs(160, 1);  // 10 batches of 16
  const std::string dir = fresh_dir("keep");
  data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});
  Net net;
  auto t = make_trainer(net, methods::Checkpoint{{.dir = dir, .every = 0.5_ep, .keep = 3}});
  (void)t.fit(loader, nullptr, {.max_duration = 4_ep, .progress = ProgressMode::never});
  CHECK(t.method<methods::Checkpoint>().saved() == 8);
  const auto left = io::list_checkpoints(dir);
  REQUIRE(left.size() == 3);
  CHECK(left[0].first == 30);
  CHECK(left[2].first == 40);
  CHECK_THROWS_AS(methods::Checkpoint({.dir = dir, .every = Duration(0, Unit::batch)}), config_error);
  CHECK_THROWS_AS(methods::Checkpoint({.dir = dir, .keep = -1}), config_error);
  fs::remove_all(dir);
}

TEST_CASE("divergence: a non-finite gradient is caught in its step; rollback recovers from a checkpoint") {
  const auto train = blobs(160, 1);
  data::Loader loader(train, {.batch_size = 16, .shuffle = true, .seed = 2});
  SUBCASE("stop (the default) names the step and the parameter") {
    Net net;
    auto t = make_trainer(net, PoisonGradient{{5}});
    const auto msg = message_of([&] { (void)t.fit(loader, nullptr, {.max_duration = 2_ep, .progress = ProgressMode::never}); });
    CHECK(msg.find("gradient of 0.Linear<4,16>.weight is not finite at step 5") != std::string::npos);
    for (const auto& w : weights_of(net)) CHECK(w.allFinite());  // caught before the optimizer used it
  }
  SUBCASE("rollback reloads the newest checkpoint and lowers the learning rate") {
    const std::string dir = fresh_dir("rollback");
    Net net;
    auto t = make_trainer(net, methods::Checkpoint{{.dir = dir, .every = 4_ba}}, PoisonGradient{{6}});
    const Result r = t.fit(loader, nullptr,
                           {.max_duration = 2_ep, .progress = ProgressMode::never, .on_divergence = Divergence::rollback});
    CHECK(r.rollbacks == 1);
    CHECK(r.steps == 20);  // steps 5 and 6 were redone after returning to step 4
    CHECK(t.method<PoisonGradient>().fired() == 1);  // the replayed step 6 is clean
    for (const auto& w : weights_of(net)) CHECK(w.allFinite());
    fs::remove_all(dir);
  }
  SUBCASE("rollback without a checkpoint, or too many, is an error that says so") {
    Net net;
    auto t = make_trainer(net, PoisonGradient{{3}});
    const auto msg = message_of([&] {
      (void)t.fit(loader, nullptr, {.max_duration = 2_ep, .progress = ProgressMode::never, .on_divergence = Divergence::rollback});
    });
    CHECK(msg.find("no checkpoint has been written") != std::string::npos);
    const std::string dir = fresh_dir("giveup");
    Net n2;
    auto t2 = make_trainer(n2, methods::Checkpoint{{.dir = dir, .every = 2_ba}}, PoisonGradient{{3, 4, 5, 6, 7, 8, 9}});
    // Steps 3, 4, 5, ... each diverge once: a rollback per step until the limit.
    const auto msg2 = message_of([&] {
      (void)t2.fit(loader, nullptr,
                   {.max_duration = 2_ep, .progress = ProgressMode::never, .on_divergence = Divergence::rollback,
                    .max_rollbacks = 2});
    });
    CHECK(msg2.find("gave up after 2 rollback(s)") != std::string::npos);
    fs::remove_all(dir);
  }
}

#ifdef FASTTRAIN_KILL_RESUME_CHILD
namespace {
// Starts `args` with stdout to /dev/null and OMP_WAIT_POLICY=passive (the child's OpenMP
// threads sleep instead of spinning when they wait, so a loaded CI machine slows it down
// less; it changes no result).
pid_t spawn_child(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings{"OMP_WAIT_POLICY=passive"};
  for (char** e = environ; *e; ++e)
    if (std::string_view(*e).rfind("OMP_WAIT_POLICY=", 0) != 0) env_strings.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE_MESSAGE(rc == 0, "cannot start ", args[0]);
  return pid;
}
int wait_child(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}
std::int64_t newest_step(const std::string& dir) {
  const auto all = io::list_checkpoints(dir);
  return all.empty() ? 0 : all.back().first;
}
}  // namespace

TEST_CASE("kill -9 at arbitrary points, resume from the newest checkpoint: bitwise-identical weights") {
  // The child trains 4 epochs of 96 batches (384 steps), checkpoints every 10 and evaluates
  // every 20 (its output holds the whole history, compared record for record). Each
  // trial kills it three times, each time once it has saved past a random step beyond the
  // previous kill, after a further random 0-3 ms (so some kills land inside a checkpoint
  // write), then lets it finish.
  const std::string child = FASTTRAIN_KILL_RESUME_CHILD;
  const std::string epochs = "4";
  const std::int64_t steps = 384;
  const std::string ref_dir = fresh_dir("kill_ref");
  REQUIRE(wait_child(spawn_child({child, ref_dir, ref_dir + "/out", "2", epochs})) == 0);
  const std::string expected = slurp(ref_dir + "/out");
  REQUIRE(expected.size() > 100000);

  Rng rng(2026);  // the kill points: arbitrary, but the same on every run of the test
  int kills = 0, trials = 0;
  std::vector<std::int64_t> killed_after;
  for (int trial = 0; trial < 4; ++trial) {
    const std::string dir = fresh_dir("kill_" + std::to_string(trial));
    for (int k = 0; k < 3; ++k) {
      // Past the newest checkpoint, into the first half of what is left.
      const std::int64_t from = newest_step(dir);
      const auto target = from + 1 + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>((steps - from) / 2)));
      const pid_t pid = spawn_child({child, dir, dir + "/out", "2", epochs});
      int status = 0;
      bool exited = false;
      while (!(exited = ::waitpid(pid, &status, WNOHANG) == pid) && newest_step(dir) < target)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      if (exited) continue;  // it finished (or failed) first: the final run below checks it
      std::this_thread::sleep_for(std::chrono::microseconds(rng.below(3000)));
      REQUIRE(::kill(pid, SIGKILL) == 0);
      (void)wait_child(pid);
      ++kills;
      killed_after.push_back(newest_step(dir));
    }
    const int status = wait_child(spawn_child({child, dir, dir + "/out", "2", epochs}));
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    CHECK_MESSAGE(slurp(dir + "/out") == expected, "trial ", trial, " differs from the uninterrupted run");
    ++trials;
    fs::remove_all(dir);
  }
  std::string points;
  for (auto s : killed_after) points += " " + std::to_string(s);
  MESSAGE(trials, " trials, ", kills, " SIGKILLs (newest checkpoint at each kill:", points,
          "): every resumed run ended bitwise identical to the uninterrupted one");
  CHECK(kills == 12);
  fs::remove_all(ref_dir);
}
#endif
