// Checkpoint format version 4: vectors of numbers as packed records; checkpoints streamed
// to disk (io::CheckpointWriter) instead of held whole in memory.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fasttrain/fasttrain.hpp>
#include <string>
#include <vector>

using namespace fasttrain;
using namespace fasttrain::literals;
using B = cpu::eigen;
namespace fs = std::filesystem;

TEST_CASE("a vector of numbers is one packed record: its size is its elements' bytes, and it round-trips") {
  std::vector<std::int64_t> order(60000);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(order.size() - i);
  std::vector<std::int32_t> labels{1, -2, 3};
  std::vector<float> f{1.5f, -0.f, std::nextafter(1.f, 2.f)};
  std::vector<double> d{0.1, -1e300};
  std::vector<bool> bits{true, false, true};
  std::vector<std::uint8_t> bytes{0, 255};
  io::StateWriter w;
  w("order", order);
  // One record: a 4-byte name length, the name, kind, element type, 8-byte count, the data.
  CHECK(w.bytes().size() == 4 + 5 + 1 + 1 + 8 + 60000 * 8);
  w("labels", labels);
  w("f", f);
  w("d", d);
  w("bits", bits);
  w("bytes", bytes);
  w("empty", std::vector<std::int64_t>{});
  io::StateReader r(w.bytes(), "x.ftc");
  std::vector<std::int64_t> order2{7}, empty2{1, 2};
  std::vector<std::int32_t> labels2;
  std::vector<float> f2;
  std::vector<double> d2;
  std::vector<bool> bits2;
  std::vector<std::uint8_t> bytes2;
  r("order", order2);
  r("labels", labels2);
  r("f", f2);
  r("d", d2);
  r("bits", bits2);
  r("bytes", bytes2);
  r("empty", empty2);
  r.finish();
  CHECK(order2 == order);
  CHECK(labels2 == labels);
  CHECK(std::memcmp(f2.data(), f.data(), sizeof(float) * 3) == 0);
  CHECK(d2 == d);
  CHECK(bits2 == bits);
  CHECK(bytes2 == bytes);
  CHECK(empty2.empty());

  // Another element type, a count beyond the data, a bool that is not 0 or 1: clear errors.
  auto message = [](const std::string& b, auto v) {
    io::StateReader rr(b, "x.ftc");
    try {
      rr("a", v);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  io::StateWriter w2;
  w2("a", labels);
  CHECK(message(w2.bytes(), std::vector<std::int64_t>{}).find("record 'a' is stored as an array of int32") !=
        std::string::npos);
  std::string cut = w2.bytes();
  cut.resize(cut.size() - 1);
  CHECK(message(cut, std::vector<std::int32_t>{}).find("claims 3 elements, more than the data holds") != std::string::npos);
  io::StateWriter w3;
  w3("a", bits);
  std::string two = w3.bytes();
  two.back() = 2;
  CHECK(message(two, std::vector<bool>{}).find("holds 2 at element 2 where a boolean") != std::string::npos);
  for (std::size_t n = 0; n < w2.bytes().size(); ++n)
    CHECK(message(w2.bytes().substr(0, n), std::vector<std::int32_t>{}) != "no error");
}

namespace {
using CNN = nn::Sequential<nn::Conv2d<1, 32, 5, 1, 2>, nn::ReLU, nn::MaxPool2d<2>, nn::Conv2d<32, 64, 5, 1, 2>,
                           nn::ReLU, nn::MaxPool2d<2>, nn::Flatten, nn::Linear<3136, 1024>, nn::ReLU,
                           nn::Linear<1024, 10>>;
}  // namespace

TEST_CASE("save_checkpoint streams: its peak memory is a buffer, not the 26 MB file") {
  // Peak resident memory (VmHWM) is reset through /proc/self/clear_refs, then read after the
  // save. Before streaming the file was built whole in memory (sections, then the file: the
  // peak rose by about twice its size).
  if (!profile::reset_peak_resident()) {
    MESSAGE("cannot reset the peak memory on this system: not checked");
    return;
  }
  data::Dataset ds;
  ds.name = "random";
  ds.sample_shape = Shape(1, 28, 28);
  ds.num_classes = 10;
  ds.features.setRandom(784, 64);
  for (int i = 0; i < 64; ++i) ds.labels.push_back(i % 10);
  data::Loader loader(ds, {.batch_size = 32, .seed = 1, .prefetch = 0});
  CNN net;
  net.reset_parameters(1);
  Trainer trainer{net, optim::SGD{{.lr = 0.01f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}};
  (void)trainer.fit(loader, nullptr, {.max_duration = 2_ba, .progress = ProgressMode::never});
  const std::string dir = (fs::temp_directory_path() / "fasttrain_stream_test").string();
  fs::create_directories(dir);
  const std::string path = dir + "/c.ftc";
  trainer.save_checkpoint(path);  // once, so that everything it allocates for good exists
  // The peak resident memory a call adds (KiB).
  auto peak_of = [](auto&& f) {
    profile::reset_peak_resident();
    const long before = profile::resident_kib();
    f();
    return profile::peak_resident_kib() - before;
  };
  const long peak = peak_of([&] { trainer.save_checkpoint(path); });
  const auto size = fs::file_size(path);
  // The control: the measurement does see a copy of the file in memory (what the save made).
  const long whole = peak_of([&] { CHECK(io::encode_checkpoint(io::read_checkpoint(path)).size() == size); });
  MESSAGE("checkpoint ", size / 1e6, " MB; peak memory during save_checkpoint: +", peak / 1024.0,
          " MB; reading and encoding it in memory: +", whole / 1024.0, " MB");
  CHECK(size > 26'000'000);
  CHECK(whole > 26'000'000 / 1024);
  CHECK(peak < 8 * 1024);  // KiB: well below the file's 26 MB
  // And it reads back.
  CNN again;
  io::load_model(path, again);
  net.for_each_parameter([&, i = 0](auto& p, auto&) mutable {
    int j = 0;
    again.for_each_parameter([&](auto& q, auto&) {
      if (j++ == i) CHECK(q == p);
    });
    ++i;
  });
  fs::remove_all(dir);
}

TEST_CASE("CheckpointWriter: a failed section leaves no temporary file and the old checkpoint intact") {
  const std::string dir = (fs::temp_directory_path() / "fasttrain_writer_test").string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = dir + "/c.ftc";
  io::CheckpointData ck;
  ck.add("a", std::string("xyz"));
  io::write_checkpoint(path, ck);
  CHECK(io::read_checkpoint(path).sections == ck.sections);
  CHECK(io::encode_checkpoint(io::read_checkpoint(path)) == io::encode_checkpoint(ck));
  try {
    io::CheckpointWriter out(path, 2);
    out.section("a", [](io::StateWriter& w) { w("v", std::vector<float>(1000000, 1.f)); });
    out.section("b", [](io::StateWriter&) { throw std::runtime_error("interrupted"); });
    out.commit();
  } catch (const std::runtime_error&) {
  }
  CHECK(io::read_checkpoint(path).sections == ck.sections);
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  // Fewer sections than announced is a programming error, also leaving nothing behind.
  {
    io::CheckpointWriter out(path, 2);
    out.section("a", [](io::StateWriter& w) { w("n", 1); });
    CHECK_THROWS_AS(out.commit(), std::logic_error);
  }
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  fs::remove_all(dir);
}
