// fuzz/fuzz_checkpoint.cpp -- libFuzzer target: the checkpoint reader, all the way from the
// file's bytes to a resumed Trainer::fit (io::decode_checkpoint, io::StateReader, every
// component's state(), the Trainer's position checks).
//
// Two modes, chosen by the first byte of the input:
//   even: the rest is a checkpoint file, read as it is (the framing, CRCs, versions);
//   odd:  the rest replaces one section's payload (byte 0 / 2 picks which) of a valid
//         checkpoint, which is then re-encoded with correct CRCs -- random mutations never
//         get a CRC right, so this is how the fuzzer reaches the record parser and the state
//         checks behind it.
// Either way the result is resumed by a small Trainer for one step. Accepted: a normal
// return, or one of fasttrain's documented errors (data_error naming the file, config_error,
// shape_error, and divergence_error for a well-formed checkpoint with non-finite weights).
//
// FASTTRAIN_FUZZ_WRITE_SEEDS=<dir> writes the seed corpus (a real checkpoint in both modes)
// into <dir> and exits; fuzz/corpus/checkpoint/ was made that way.
// FUZZ_ARGS: -max_len=8192 -malloc_limit_mb=64
#include <cstdint>
#include <cstdlib>
#include <fasttrain/fasttrain.hpp>
#include <fstream>
#include <string>

#include "fuzz_common.hpp"

using namespace fasttrain;
using namespace fasttrain::literals;

namespace {

using Net = nn::Sequential<nn::Linear<4, 6>, nn::ReLU, nn::Dropout, nn::Linear<6, 3>>;

struct Fixture {
  data::Dataset ds;
  Fixture() {
    ds.name = "tiny";
    ds.sample_shape = Shape(4);
    ds.num_classes = 3;
    ds.features.resize(4, 8);
    Rng rng(1);
    cpu::eigen::fill_normal(ds.features, 0.f, 1.f, rng);
    for (int i = 0; i < 8; ++i) ds.labels.push_back(i % 3);
  }
  // Resumes from `path` for at most one more step.
  void resume(const std::string& path, Duration budget) {
    data::Loader loader(ds, {.batch_size = 4, .shuffle = true, .seed = 1, .prefetch = 0});
    Net net;
    Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, methods::LabelSmoothing{0.1f},
              methods::GradientClipping::by_norm(1.f)};
    FitOptions o{.max_duration = budget, .progress = ProgressMode::never, .resume_from = path};
    (void)t.fit(loader, nullptr, o);
  }
  // A valid checkpoint after 3 steps of the same Trainer.
  std::string valid_checkpoint() {
    data::Loader loader(ds, {.batch_size = 4, .shuffle = true, .seed = 1, .prefetch = 0});
    Net net;
    net.reset_parameters(2);
    Trainer t{net, optim::SGD{{.lr = 0.1f, .momentum = 0.9f}}, nn::SoftmaxCrossEntropy{}, methods::LabelSmoothing{0.1f},
              methods::GradientClipping::by_norm(1.f)};
    (void)t.fit(loader, nullptr, {.max_duration = 3_ba, .progress = ProgressMode::never});
    t.save_checkpoint("/tmp/fasttrain_fuzz_checkpoint_template.ftc");
    std::ifstream f("/tmp/fasttrain_fuzz_checkpoint_template.ftc", std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}
const io::CheckpointData& template_checkpoint() {
  static const io::CheckpointData ck = [] {
    return io::decode_checkpoint(fixture().valid_checkpoint(), "template");
  }();
  return ck;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("FASTTRAIN_FUZZ_WRITE_SEEDS")) {
    const auto& ck = template_checkpoint();
    write_file(std::string(dir) + "/file.bin", std::string(1, '\0') + io::encode_checkpoint(ck));
    for (std::size_t i = 0; i < ck.sections.size(); ++i)
      write_file(std::string(dir) + "/section_" + ck.sections[i].first + ".bin",
                 std::string(1, static_cast<char>(2 * i + 1)) + ck.sections[i].second);
    std::exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static fuzz::MemFile file("checkpoint");
  const auto& tmpl = template_checkpoint();
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 1) {
    io::CheckpointData ck = tmpl;
    ck.sections[(data[0] / 2) % ck.sections.size()].second = std::move(bytes);
    bytes = io::encode_checkpoint(ck);
  }
  file.write(bytes.data(), bytes.size());
  const std::string& path = file.path();
  (void)fuzz::accepted(
      [&] {
        try {
          fixture().resume(path, 4_ba);
        } catch (const divergence_error& e) {
          fuzz::check_message("divergence_error", e.what());
        }
      },
      {path});
  return 0;
}
