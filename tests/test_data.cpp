// The data layer: IDX and CSV readers (valid files, gzip and plain, and every kind of bad
// file), Dataset validation, the Normalizer, the Loader (order, determinism, prefetch vs
// synchronous, cancellation, destruction, errors) and, when installed, real Fashion-MNIST.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <memory>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "fasttrain/data/data.hpp"

using namespace fasttrain;
namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

// A fresh directory under the system temp directory, removed with everything in it.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path = fs::temp_directory_path() /
           ("fasttrain_test_data_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
            std::to_string(stamp));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_plain(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

void write_plain(const std::string& path, const std::string& text) {
  write_plain(path, Bytes(text.begin(), text.end()));
}

void write_gzip(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

Bytes read_plain(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void put32(Bytes& b, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
}

Bytes idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols, const Bytes& pixels,
                 std::uint32_t magic = 0x00000803) {
  Bytes b;
  put32(b, magic);
  put32(b, count);
  put32(b, rows);
  put32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

Bytes idx_labels(std::uint32_t count, const Bytes& labels, std::uint32_t magic = 0x00000801) {
  Bytes b;
  put32(b, magic);
  put32(b, count);
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// Runs `fn`, which must throw data_error whose what() names `path` and contains every one
// of `parts`.
void check_data_error(const std::function<void()>& fn, const std::string& path,
                      std::initializer_list<std::string> parts) {
  try {
    fn();
    FAIL("no data_error thrown (expected one about ", path, ")");
  } catch (const data_error& e) {
    const std::string what = e.what();
    INFO("what(): ", what);
    CHECK(what.find(path) != std::string::npos);
    CHECK(e.path() == path);
    for (const auto& p : parts) {
      INFO("expected to contain: ", p);
      CHECK(what.find(p) != std::string::npos);
    }
  }
}

// The tiny valid IDX pair: 3 images of 2x3, labels {2, 0, 1}.
const Bytes tiny_pixels = {0, 1, 2, 3, 127, 128, 255, 254, 17, 34, 51, 68, 200, 100, 50, 25, 0, 255};
const Bytes tiny_labels = {2, 0, 1};

}  // namespace

// ---- IDX ------------------------------------------------------------------------------

TEST_CASE("IDX: a tiny valid pair loads exactly, gzip and plain") {
  TempDir dir;
  for (const bool gz_images : {true, false}) {
    for (const bool gz_labels : {true, false}) {
      CAPTURE(gz_images);
      CAPTURE(gz_labels);
      const std::string img = dir.file(gz_images ? "img.gz" : "img"), lab = dir.file(gz_labels ? "lab.gz" : "lab");
      const Bytes img_bytes = idx_images(3, 2, 3, tiny_pixels), lab_bytes = idx_labels(3, tiny_labels);
      if (gz_images) write_gzip(img, img_bytes); else write_plain(img, img_bytes);
      if (gz_labels) write_gzip(lab, lab_bytes); else write_plain(lab, lab_bytes);

      const data::IdxImages raw = data::read_idx_images(img);
      CHECK(raw.count == 3);
      CHECK(raw.rows == 2);
      CHECK(raw.cols == 3);
      CHECK(raw.pixels == tiny_pixels);
      CHECK(data::read_idx_labels(lab, 3) == std::vector<std::int32_t>{2, 0, 1});

      const data::Dataset ds = data::load_idx(img, lab, 3, "tiny");
      CHECK(ds.size() == 3);
      CHECK(ds.features.rows() == 6);
      CHECK(ds.sample_shape == Shape(1, 2, 3));
      CHECK(ds.num_classes == 3);
      CHECK(ds.name == "tiny");
      CHECK(ds.labels == std::vector<std::int32_t>{2, 0, 1});
      for (int j = 0; j < 3; ++j)
        for (int i = 0; i < 6; ++i)
          CHECK(ds.features(i, j) == static_cast<float>(tiny_pixels[static_cast<std::size_t>(j * 6 + i)]) / 255.f);
      CHECK(ds.features(0, 0) == 0.f);
      CHECK(ds.features(0, 1) == 1.f);  // 255 -> exactly 1
      CHECK_NOTHROW(ds.validate());
    }
  }
}

TEST_CASE("IDX: every kind of bad file raises data_error naming the file and the problem") {
  TempDir dir;
  const std::string img = dir.file("img.gz"), lab = dir.file("lab.gz");
  write_gzip(img, idx_images(3, 2, 3, tiny_pixels));
  write_gzip(lab, idx_labels(3, tiny_labels));

  SUBCASE("missing file") {
    const std::string missing = dir.file("nope.gz");
    check_data_error([&] { data::read_idx_images(missing); }, missing, {"cannot open", "No such file"});
    check_data_error([&] { data::load_idx(img, missing, 3, "x"); }, missing, {"cannot open"});
  }
  SUBCASE("a directory") {
    const std::string d = dir.path.string();
    check_data_error([&] { data::read_idx_images(d); }, d, {"is a directory"});
  }
  SUBCASE("empty file") {
    const std::string p = dir.file("empty");
    write_plain(p, Bytes{});
    check_data_error([&] { data::read_idx_images(p); }, p, {"is empty"});
  }
  SUBCASE("wrong magic") {
    const std::string p = dir.file("magic.gz");
    write_gzip(p, idx_images(3, 2, 3, tiny_pixels, 0x00000802));
    check_data_error([&] { data::read_idx_images(p); }, p,
                     {"bad magic number 0x00000802, expected 0x00000803 (IDX unsigned-byte images, 3 dimensions)"});
    const std::string q = dir.file("labmagic");
    write_plain(q, idx_labels(3, tiny_labels, 0x00000803));
    check_data_error([&] { data::read_idx_labels(q, 3); }, q,
                     {"bad magic number 0x00000803, expected 0x00000801 (IDX unsigned-byte labels, 1 dimension)",
                      "swapped"});
  }
  SUBCASE("images and labels swapped") {
    check_data_error([&] { data::load_idx(lab, img, 3, "x"); }, lab, {"bad magic number 0x00000801", "swapped"});
  }
  SUBCASE("truncated header") {
    const std::string p = dir.file("short");
    Bytes b = idx_images(3, 2, 3, {});
    b.resize(10);
    write_plain(p, b);
    check_data_error([&] { data::read_idx_images(p); }, p, {"truncated", "holds only 10 bytes", "header needs 16"});
  }
  SUBCASE("truncated pixels") {
    const std::string p = dir.file("trunc.gz");
    write_gzip(p, idx_images(3, 2, 3, Bytes(tiny_pixels.begin(), tiny_pixels.begin() + 10)));
    check_data_error([&] { data::read_idx_images(p); }, p,
                     {"truncated: header says 3 images of 2x3 = 18 bytes, file holds 10"});
  }
  SUBCASE("truncated labels") {
    const std::string p = dir.file("lab_trunc");
    write_plain(p, idx_labels(5, tiny_labels));
    check_data_error([&] { data::read_idx_labels(p, 3); }, p, {"truncated: header says 5 labels, file holds 3"});
  }
  SUBCASE("trailing data") {
    const std::string p = dir.file("trail.gz");
    Bytes px = tiny_pixels;
    px.push_back(7);
    write_gzip(p, idx_images(3, 2, 3, px));
    check_data_error([&] { data::read_idx_images(p); }, p, {"unexpected data after the last image"});
    const std::string q = dir.file("lab_trail");
    write_plain(q, idx_labels(2, tiny_labels));
    check_data_error([&] { data::read_idx_labels(q, 3); }, q, {"unexpected data after the last label"});
  }
  SUBCASE("label out of range") {
    const std::string p = dir.file("range.gz");
    write_gzip(p, idx_labels(7, {0, 1, 2, 3, 4, 12, 5}));
    check_data_error([&] { data::read_idx_labels(p, 10); }, p, {"label 12 at index 5 is out of range [0, 10)"});
    CHECK_THROWS_AS(data::read_idx_labels(p, 0), config_error);
  }
  SUBCASE("count mismatch between the two files") {
    const std::string p = dir.file("lab4");
    write_plain(p, idx_labels(4, {0, 1, 2, 0}));
    check_data_error([&] { data::load_idx(img, p, 3, "x"); }, p,
                     {"holds 4 labels but the images file", img, "holds 3 images"});
  }
  SUBCASE("absurd dimensions") {
    const std::string p = dir.file("zero");
    write_plain(p, idx_images(0, 28, 28, {}));
    check_data_error([&] { data::read_idx_images(p); }, p, {"absurd dimensions: 0 images of 28x28"});
    const std::string q = dir.file("zerorows");
    write_plain(q, idx_images(5, 0, 28, {}));
    check_data_error([&] { data::read_idx_images(q); }, q, {"absurd dimensions"});
    const std::string h = dir.file("huge");
    write_plain(h, idx_images(0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, tiny_pixels));
    check_data_error([&] { data::read_idx_images(h); }, h, {"absurd dimensions", "2^31"});
    const std::string l = dir.file("hugelab");
    write_plain(l, idx_labels(0xFFFFFFFFu, tiny_labels));
    check_data_error([&] { data::read_idx_labels(l, 3); }, l, {"absurd dimensions"});
  }
  SUBCASE("a large header over a tiny file is reported as truncation, without allocating the claim") {
    const std::string p = dir.file("claims2GB.gz");
    write_gzip(p, idx_images(2000, 1000, 1000, tiny_pixels));  // claims 2e9 bytes, holds 18
    check_data_error([&] { data::read_idx_images(p); }, p,
                     {"truncated: header says 2000 images of 1000x1000 = 2000000000 bytes, file holds 18"});
  }
  SUBCASE("corrupt gzip stream") {
    const std::string p = dir.file("corrupt.gz");
    Bytes big;  // enough incompressible-ish data that the deflate stream has some length
    for (int i = 0; i < 6000; ++i) big.push_back(static_cast<std::uint8_t>((i * 7919) ^ (i >> 3)));
    write_gzip(p, idx_images(6, 20, 50, big));
    Bytes gz = read_plain(p);
    REQUIRE(gz.size() > 100);
    for (std::size_t i = 20; i < gz.size() - 20; i += 7) gz[i] = static_cast<std::uint8_t>(gz[i] ^ 0x5A);
    write_plain(p, gz);
    check_data_error([&] { data::read_idx_images(p); }, p, {"corrupt or truncated gzip stream (zlib: "});
  }
  SUBCASE("truncated gzip stream") {
    const std::string p = dir.file("cut.gz");
    Bytes gz = read_plain(img);
    gz.resize(gz.size() - 6);  // lose the CRC / length trailer
    write_plain(p, gz);
    check_data_error([&] { data::read_idx_images(p); }, p, {"corrupt or truncated gzip stream"});
  }
}

// ---- CSV ------------------------------------------------------------------------------

TEST_CASE("CSV: valid files load, with header, CRLF, trailing newline, label anywhere, gzip") {
  TempDir dir;
  SUBCASE("label first, header, CRLF, no trailing newline") {
    const std::string p = dir.file("a.csv");
    write_plain(p, "label,x,y\r\n1,0.5,-2\r\n0, 3 ,4e1\r\n2,+1.25,0");
    const data::Dataset ds = data::read_csv(p, {.has_header = true});
    CHECK(ds.size() == 3);
    CHECK(ds.sample_shape == Shape(2));
    CHECK(ds.num_classes == 3);  // inferred: max label + 1
    CHECK(ds.labels == std::vector<std::int32_t>{1, 0, 2});
    CHECK(ds.features(0, 0) == 0.5f);
    CHECK(ds.features(1, 0) == -2.f);
    CHECK(ds.features(0, 1) == 3.f);
    CHECK(ds.features(1, 1) == 40.f);
    CHECK(ds.features(0, 2) == 1.25f);
    CHECK(ds.features(1, 2) == 0.f);
    CHECK(ds.name == p);
    CHECK_NOTHROW(ds.validate());
  }
  SUBCASE("label last (-1), semicolons, trailing newline, blank lines, given num_classes, gzip") {
    const std::string p = dir.file("b.csv.gz");
    const std::string text = "1;2;3;0\n\n4;5;6;1\n7;8;9;0\n";
    write_gzip(p, Bytes(text.begin(), text.end()));
    const data::Dataset ds = data::read_csv(p, {.label_column = -1, .delimiter = ';', .num_classes = 5});
    CHECK(ds.size() == 3);
    CHECK(ds.num_classes == 5);
    CHECK(ds.labels == std::vector<std::int32_t>{0, 1, 0});
    CHECK(ds.sample_shape == Shape(3));
    for (int j = 0; j < 3; ++j)
      for (int i = 0; i < 3; ++i) CHECK(ds.features(i, j) == static_cast<float>(3 * j + i + 1));
  }
  SUBCASE("label in the middle, integral float labels accepted") {
    const std::string p = dir.file("c.csv");
    write_plain(p, "0.1,3.0,0.2\n0.3,1,0.4\n");
    const data::Dataset ds = data::read_csv(p, {.label_column = 1});
    CHECK(ds.labels == std::vector<std::int32_t>{3, 1});
    CHECK(ds.features(0, 1) == 0.3f);
    CHECK(ds.features(1, 1) == 0.4f);
    CHECK(ds.num_classes == 4);
  }
}

TEST_CASE("CSV: bad files raise data_error naming the file, line and column") {
  TempDir dir;
  const std::string p = dir.file("bad.csv");
  SUBCASE("missing") {
    const std::string m = dir.file("missing.csv");
    check_data_error([&] { data::read_csv(m); }, m, {"cannot open"});
  }
  SUBCASE("empty") {
    write_plain(p, "");
    check_data_error([&] { data::read_csv(p); }, p, {"is empty"});
  }
  SUBCASE("header only") {
    write_plain(p, "label,a,b\n");
    check_data_error([&] { data::read_csv(p, {.has_header = true}); }, p, {"no data rows"});
  }
  SUBCASE("only blank lines") {
    write_plain(p, "\n\r\n  \n");
    check_data_error([&] { data::read_csv(p); }, p, {"no data rows"});
  }
  SUBCASE("ragged row, too few fields") {
    write_plain(p, "1,2,3\n0,1,2\n1,2\n");
    check_data_error([&] { data::read_csv(p); }, p, {"line 3 has 2 fields, expected 3"});
  }
  SUBCASE("ragged row, too many fields (header counted in line numbers)") {
    write_plain(p, "h1,h2,h3\n1,2,3\n0,1,2\n1,2,3\n1,2,3,4,5\n");
    check_data_error([&] { data::read_csv(p, {.has_header = true}); }, p, {"line 5 has 5 fields, expected 3"});
  }
  SUBCASE("non-numeric field") {
    write_plain(p, "1,2,3\n0,1,2\n1,abc,3\n");
    check_data_error([&] { data::read_csv(p); }, p, {"line 3, column 2: 'abc' is not a number"});
  }
  SUBCASE("empty field") {
    write_plain(p, "1,2,3\n0,,2\n");
    check_data_error([&] { data::read_csv(p); }, p, {"line 2, column 2: '' is not a number"});
  }
  SUBCASE("non-finite field") {
    write_plain(p, "1,2,nan\n");
    check_data_error([&] { data::read_csv(p); }, p, {"line 1, column 3: 'nan' is not a finite number"});
  }
  SUBCASE("label not a non-negative integer") {
    write_plain(p, "1,2,3\n-1,1,2\n");
    check_data_error([&] { data::read_csv(p); }, p, {"line 2, column 1: label '-1' is not a non-negative integer"});
    write_plain(p, "2.5,1,2\n");
    check_data_error([&] { data::read_csv(p); }, p, {"line 1, column 1: label '2.5' is not a non-negative integer"});
    write_plain(p, "1,2,3\n1,2,cat\n");
    check_data_error([&] { data::read_csv(p, {.label_column = -1}); }, p,
                     {"line 2, column 3: label 'cat' is not a non-negative integer"});
  }
  SUBCASE("label out of range when num_classes is given") {
    write_plain(p, "1,2,3\n12,1,2\n");
    check_data_error([&] { data::read_csv(p, {.num_classes = 10}); }, p,
                     {"line 2, column 1: label 12 is out of range [0, 10)"});
  }
  SUBCASE("label_column out of range") {
    write_plain(p, "1,2,3\n");
    check_data_error([&] { data::read_csv(p, {.label_column = 3}); }, p,
                     {"label_column 3 is out of range", "3 fields"});
    check_data_error([&] { data::read_csv(p, {.label_column = -4}); }, p,
                     {"label_column -4 is out of range", "3 fields"});
    CHECK(data::read_csv(p, {.label_column = -3}).labels == std::vector<std::int32_t>{1});
  }
  SUBCASE("a single column") {
    write_plain(p, "1\n2\n");
    check_data_error([&] { data::read_csv(p); }, p, {"line 1 has 1 field"});
  }
  SUBCASE("impossible options") {
    write_plain(p, "1,2\n");
    CHECK_THROWS_AS(data::read_csv(p, {.num_classes = -1}), config_error);
    CHECK_THROWS_AS(data::read_csv(p, {.delimiter = '\n'}), config_error);
  }
}

// ---- Dataset and Normalizer -------------------------------------------------------------

namespace {
// n samples of shape {2, 3}: feature i of sample j is 10 j + i; label j % 7.
data::Dataset counting(std::int64_t n, std::string name = "counting") {
  data::Dataset ds;
  ds.features.resize(6, n);
  for (std::int64_t j = 0; j < n; ++j)
    for (int i = 0; i < 6; ++i) ds.features(i, j) = static_cast<float>(10 * j + i);
  ds.labels.resize(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) ds.labels[static_cast<std::size_t>(j)] = static_cast<std::int32_t>(j % 7);
  ds.sample_shape = Shape(2, 3);
  ds.num_classes = 7;
  ds.name = std::move(name);
  return ds;
}
}  // namespace

TEST_CASE("Dataset::validate names the dataset and the inconsistency; subset copies a range") {
  data::Dataset ds = counting(10, "toy");
  CHECK_NOTHROW(ds.validate());
  CHECK(ds.size() == 10);

  auto bad = ds;
  bad.labels.pop_back();
  check_data_error([&] { bad.validate(); }, "toy", {"10 samples", "9 labels"});
  bad = ds;
  bad.sample_shape = Shape(7);
  check_data_error([&] { bad.validate(); }, "toy", {"sample_shape (7)"});
  bad = ds;
  bad.labels[4] = 9;
  check_data_error([&] { bad.validate(); }, "toy", {"label 9 at index 4 is out of range [0, 7)"});
  bad = ds;
  bad.labels[2] = -1;
  check_data_error([&] { bad.validate(); }, "toy", {"label -1 at index 2"});

  const data::Dataset s = data::subset(ds, 3, 4);
  CHECK(s.size() == 4);
  CHECK(s.name == "toy[3:7]");
  CHECK(s.sample_shape == ds.sample_shape);
  CHECK(s.num_classes == 7);
  CHECK(s.features == ds.features.middleCols(3, 4));
  CHECK(s.labels == std::vector<std::int32_t>{3, 4, 5, 6});
  CHECK(data::subset(ds, 10, 0).size() == 0);
  CHECK_THROWS_AS(data::subset(ds, 8, 3), config_error);
  CHECK_THROWS_AS(data::subset(ds, -1, 2), config_error);
}

TEST_CASE("Normalizer: mean 0 / std 1 after apply on the fitted data; test uses training statistics") {
  data::Dataset train = counting(50, "train"), test = counting(5, "test");
  test.features.array() += 1000.f;
  for (const bool per_feature : {false, true}) {
    CAPTURE(per_feature);
    data::Dataset tr = train, te = test;
    tr.features.row(5).setConstant(3.f);  // a constant feature must not divide by zero
    const auto norm = data::Normalizer::fit(tr, per_feature);
    CHECK(norm.mean.rows() == (per_feature ? 6 : 1));
    CHECK(norm.global() == !per_feature);
    norm.apply(tr);
    norm.apply(te);
    CHECK(tr.features.allFinite());
    if (per_feature) {
      for (int i = 0; i < 5; ++i) {
        const auto r = tr.features.row(i).cast<double>();
        const double mean = r.mean();
        const double var = (r.array() - mean).square().mean();
        CHECK(std::abs(mean) < 1e-5);
        CHECK(std::abs(var - 1.0) < 1e-4);
      }
      CHECK(tr.features.row(5).cwiseAbs().maxCoeff() == 0.f);  // constant feature -> 0
      CHECK(norm.stddev(5, 0) == data::Normalizer::min_stddev);
    } else {
      const auto a = tr.features.cast<double>().array();
      CHECK(std::abs(a.mean()) < 1e-5);
      CHECK(std::abs((a - a.mean()).square().mean() - 1.0) < 1e-4);
    }
    // The test set moved by +1000 before normalisation, so it is far from zero after.
    CHECK(te.features.mean() > 1.f);
  }
  data::Dataset other;
  other.features = cpu::eigen::matrix::Zero(4, 3);
  other.labels = {0, 0, 0};
  other.sample_shape = Shape(4);
  other.num_classes = 1;
  other.name = "other";
  CHECK_THROWS_WITH_AS(data::Normalizer::fit(train, true).apply(other),
                       doctest::Contains("fitted on 6 features per sample but other has 4"), shape_error);
  CHECK_NOTHROW(data::Normalizer::fit(train, false).apply(other));  // global statistics fit any shape
  CHECK_THROWS_AS(data::Normalizer{}.apply(other), config_error);
  data::Dataset none;
  none.name = "void";
  check_data_error([&] { data::Normalizer::fit(none); }, "void", {"empty dataset"});
}

// ---- Loader ---------------------------------------------------------------------------

namespace {
// All batches of one epoch.
std::vector<data::Batch<>> epoch_batches(data::Loader& loader, std::int64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<data::Batch<>> out;
  data::Batch<> b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

std::vector<std::int64_t> order_of(const std::vector<data::Batch<>>& batches) {
  std::vector<std::int64_t> o;
  for (const auto& b : batches) o.insert(o.end(), b.indices.begin(), b.indices.end());
  return o;
}

void check_contents(const data::Dataset& ds, const data::Batch<>& b) {
  REQUIRE(b.indices.size() == static_cast<std::size_t>(b.size()));
  REQUIRE(b.labels.size() == b.indices.size());
  CHECK(b.inputs.shape == ds.sample_shape);
  CHECK(b.inputs.data.rows() == ds.features.rows());
  for (std::int64_t j = 0; j < b.size(); ++j) {
    const auto i = b.indices[static_cast<std::size_t>(j)];
    CHECK(b.inputs.data.col(j) == ds.features.col(i));
    CHECK(b.labels[static_cast<std::size_t>(j)] == ds.labels[static_cast<std::size_t>(i)]);
  }
}

bool identical(const std::vector<data::Batch<>>& a, const std::vector<data::Batch<>>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t k = 0; k < a.size(); ++k) {
    if (a[k].indices != b[k].indices || a[k].labels != b[k].labels || !(a[k].inputs.shape == b[k].inputs.shape))
      return false;
    if (a[k].inputs.data.rows() != b[k].inputs.data.rows() || a[k].inputs.data.cols() != b[k].inputs.data.cols())
      return false;
    if (std::memcmp(a[k].inputs.data.data(), b[k].inputs.data.data(),
                    static_cast<std::size_t>(a[k].inputs.data.size()) * sizeof(float)) != 0)
      return false;
  }
  return true;
}
}  // namespace

TEST_CASE("Loader: every sample exactly once per epoch, contents match the indices, last batch smaller") {
  const data::Dataset ds = counting(103);
  for (const int prefetch : {0, 1, 2, 5}) {
    CAPTURE(prefetch);
    data::Loader loader(ds, {.batch_size = 10, .seed = 42, .prefetch = prefetch});
    CHECK(loader.batches_per_epoch() == 11);
    CHECK(loader.samples_per_epoch() == 103);
    CHECK(&loader.dataset() == &ds);
    CHECK(loader.options().batch_size == 10);
    for (std::int64_t e = 0; e < 3; ++e) {
      const auto batches = epoch_batches(loader, e);
      REQUIRE(batches.size() == 11);
      for (std::size_t k = 0; k < 10; ++k) CHECK(batches[k].size() == 10);
      CHECK(batches.back().size() == 3);
      for (const auto& b : batches) check_contents(ds, b);
      auto o = order_of(batches);
      std::sort(o.begin(), o.end());
      std::vector<std::int64_t> all(103);
      std::iota(all.begin(), all.end(), 0);
      CHECK(o == all);
    }
  }
}

TEST_CASE("Loader: the order is a pure function of (seed, epoch)") {
  const data::Dataset ds = counting(103);
  data::Loader a(ds, {.batch_size = 16, .seed = 7, .prefetch = 2});
  data::Loader b(ds, {.batch_size = 16, .seed = 7, .prefetch = 0});
  data::Loader c(ds, {.batch_size = 16, .seed = 8, .prefetch = 2});
  const auto a0 = order_of(epoch_batches(a, 0)), a1 = order_of(epoch_batches(a, 1));
  CHECK(order_of(epoch_batches(a, 0)) == a0);  // replaying epoch 0 after epoch 1
  CHECK(order_of(epoch_batches(b, 1)) == a1);  // another loader, epochs out of order
  CHECK(order_of(epoch_batches(b, 0)) == a0);
  CHECK(a0 != a1);
  CHECK(order_of(epoch_batches(c, 0)) != a0);
  std::vector<std::int64_t> identity(103);
  std::iota(identity.begin(), identity.end(), 0);
  CHECK(a0 != identity);

  // The documented recipe: identity shuffled by Rng::derive(seed, epoch).
  std::vector<std::int64_t> expect = identity;
  Rng::derive(7, 1).shuffle(expect.begin(), expect.end());
  CHECK(a1 == expect);

  data::Loader plain(ds, {.batch_size = 16, .shuffle = false, .seed = 7, .prefetch = 2});
  CHECK(order_of(epoch_batches(plain, 0)) == identity);
  CHECK(order_of(epoch_batches(plain, 5)) == identity);
}

TEST_CASE("Loader: drop_last") {
  const data::Dataset ds = counting(103);
  for (const int prefetch : {0, 2}) {
    data::Loader loader(ds, {.batch_size = 10, .drop_last = true, .prefetch = prefetch});
    CHECK(loader.batches_per_epoch() == 10);
    CHECK(loader.samples_per_epoch() == 100);
    const auto batches = epoch_batches(loader, 0);
    REQUIRE(batches.size() == 10);
    for (const auto& b : batches) CHECK(b.size() == 10);
    auto o = order_of(batches);
    CHECK(std::set<std::int64_t>(o.begin(), o.end()).size() == 100);
  }
  data::Loader exact(ds, {.batch_size = 103, .drop_last = true});
  CHECK(exact.batches_per_epoch() == 1);
}

TEST_CASE("Loader: prefetch = 2 and prefetch = 0 give bitwise-identical batches") {
  data::Dataset ds = counting(257);
  Rng rng(3);
  cpu::eigen::fill_normal(ds.features, 0.f, 1.f, rng);
  for (const bool drop_last : {false, true}) {
    data::Loader sync(ds, {.batch_size = 32, .seed = 11, .drop_last = drop_last, .prefetch = 0});
    data::Loader async(ds, {.batch_size = 32, .seed = 11, .drop_last = drop_last, .prefetch = 2});
    for (std::int64_t e : {0, 1, 2, 7}) {
      const auto x = epoch_batches(sync, e), y = epoch_batches(async, e);
      CHECK(identical(x, y));
      for (const auto& b : y) check_contents(ds, b);
    }
  }
}

TEST_CASE("Loader: an epoch with a given order draws exactly it, in batches, from any first batch") {
  const data::Dataset ds = counting(50);
  // 23 entries with repeats and gaps: 3 batches of 10, 10, 3 (drop_last: 2 of 10).
  std::vector<std::int64_t> order;
  for (int k = 0; k < 23; ++k) order.push_back((k * 7) % 13 + (k % 2) * 30);
  for (const int prefetch : {0, 2}) {
    for (const bool drop_last : {false, true}) {
      CAPTURE(prefetch);
      CAPTURE(drop_last);
      data::Loader loader(ds, {.batch_size = 10, .seed = 1, .drop_last = drop_last, .prefetch = prefetch});
      loader.start_epoch(3, 0, order);
      CHECK(loader.batches_in_epoch() == (drop_last ? 2 : 3));
      CHECK(loader.samples_in_epoch() == (drop_last ? 20 : 23));
      CHECK(loader.batches_per_epoch() == 5);  // the default epoch's, unchanged
      std::vector<data::Batch<>> got;
      data::Batch<> b;
      while (loader.next(b)) {
        check_contents(ds, b);
        got.push_back(b);
      }
      const auto drawn = order_of(got);
      CHECK(drawn == std::vector<std::int64_t>(order.begin(), order.begin() + (drop_last ? 20 : 23)));
      // Starting at batch 1 gathers the rest only; the next plain epoch is the full default one.
      loader.start_epoch(3, 1, order);
      std::vector<data::Batch<>> rest;
      while (loader.next(b)) rest.push_back(b);
      CHECK(order_of(rest) == std::vector<std::int64_t>(drawn.begin() + 10, drawn.end()));
      CHECK(loader.batches_in_epoch() == (drop_last ? 2 : 3));
      CHECK(order_of(epoch_batches(loader, 4)).size() == 50u);
      CHECK(loader.batches_in_epoch() == 5);
    }
  }
  data::Loader loader(ds, {.batch_size = 10, .prefetch = 0});
  CHECK_THROWS_WITH_AS(loader.start_epoch(0, 0, {1, 50}), doctest::Contains("entry 1 of the given order is 50"),
                       config_error);
  CHECK_THROWS_WITH_AS(loader.start_epoch(0, 0, {}), doctest::Contains("the given order is empty"), config_error);
  CHECK_THROWS_WITH_AS(loader.start_epoch(0, 2, {1, 2, 3}), doctest::Contains("first_batch must be in [0, 1]"),
                       config_error);
  data::Loader dl(ds, {.batch_size = 10, .drop_last = true, .prefetch = 0});
  CHECK_THROWS_WITH_AS(dl.start_epoch(0, 0, {1, 2, 3}), doctest::Contains("fewer than a batch"), config_error);
}

TEST_CASE("Loader: set_batch_size re-cuts the next epochs into other batches; the order does not change") {
  const data::Dataset ds = counting(50);
  for (const int prefetch : {0, 2}) {
    CAPTURE(prefetch);
    data::Loader ref(ds, {.batch_size = 10, .seed = 5, .prefetch = prefetch});
    data::Loader loader(ds, {.batch_size = 10, .seed = 5, .prefetch = prefetch});
    loader.set_batch_size(4);
    CHECK(loader.batch_size() == 4);  // of the next epoch
    const auto small = epoch_batches(loader, 2);
    REQUIRE(small.size() == 13);  // 12 of 4, then 2
    for (std::size_t k = 0; k < 12; ++k) CHECK(small[k].size() == 4);
    CHECK(small.back().size() == 2);
    for (const auto& b : small) check_contents(ds, b);
    CHECK(loader.batches_in_epoch() == 13);
    CHECK(loader.samples_in_epoch() == 50);
    CHECK(loader.batches_per_epoch() == 5);  // the options' epoch, unchanged
    CHECK(order_of(small) == order_of(epoch_batches(ref, 2)));
    // A given order is cut by the set size too; mid-epoch starts count batches of that size.
    loader.set_batch_size(7);
    loader.start_epoch(1, 1, {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8});
    data::Batch<> b;
    REQUIRE(loader.next(b));
    CHECK(b.indices == std::vector<std::int64_t>{6, 5, 3, 5, 8});
    CHECK_FALSE(loader.next(b));
    // 0 returns to the options' size.
    loader.set_batch_size(0);
    CHECK(epoch_batches(loader, 2).size() == 5);
    CHECK(loader.batch_size() == 10);
  }
  data::Loader loader(ds, {.batch_size = 10, .prefetch = 0});
  CHECK_THROWS_WITH_AS(loader.set_batch_size(-1), doctest::Contains("must be >= 1"), config_error);
  data::Loader dl(ds, {.batch_size = 10, .drop_last = true, .prefetch = 0});
  CHECK_THROWS_WITH_AS(dl.set_batch_size(51), doctest::Contains("larger than the dataset"), config_error);
  dl.set_batch_size(20);
  CHECK(epoch_batches(dl, 0).size() == 2);  // 40 of 50 samples, in 2 batches
  CHECK(dl.samples_in_epoch() == 40);
}

TEST_CASE("shard_order cuts each global batch in rank order and the tail evenly") {
  std::vector<std::int64_t> order(11);
  std::iota(order.begin(), order.end(), std::int64_t{100});
  // 2 shards, batch 2: global batches {100..103}, {104..107}; the tail {108, 109} cut 1 + 1; 110 left over.
  CHECK(data::shard_order(order, 2, 0, 2) == std::vector<std::int64_t>{100, 101, 104, 105, 108});
  CHECK(data::shard_order(order, 2, 1, 2) == std::vector<std::int64_t>{102, 103, 106, 107, 109});
  // 3 shards, batch 4: 3 samples each, all in the tail.
  CHECK(data::shard_order(order, 4, 2, 3) == std::vector<std::int64_t>{106, 107, 108});
  CHECK(data::shard_order(order, 4, 0, 1) == order);
  CHECK_THROWS_WITH_AS(data::shard_order(order, 2, 2, 2), doctest::Contains("shard must be in [0, 2)"), config_error);
  CHECK_THROWS_WITH_AS(data::shard_order(order, 0, 0, 2), doctest::Contains("batch size must be >= 1"), config_error);
  CHECK_THROWS_WITH_AS(data::shard_order({1, 2}, 1, 0, 3), doctest::Contains("cannot be cut into 3 shards"),
                       config_error);
}

TEST_CASE("Loader: W sharded loaders with batch b hand out, step by step, the batches of one loader with batch W*b") {
  const data::Dataset ds = counting(103);
  for (const int w : {2, 3}) {
    for (const int prefetch : {0, 2}) {
      CAPTURE(w);
      CAPTURE(prefetch);
      data::Loader whole(ds, {.batch_size = 4 * w, .seed = 9, .prefetch = prefetch});
      std::vector<std::unique_ptr<data::Loader>> shards;
      for (int r = 0; r < w; ++r)
        shards.push_back(std::make_unique<data::Loader>(
            ds, data::LoaderOptions{.batch_size = 4, .seed = 9, .prefetch = prefetch, .num_shards = w, .shard = r}));
      const std::int64_t per_rank = 103 / w;
      for (const auto& l : shards) {
        CHECK(l->samples_per_epoch() == per_rank);
        CHECK(l->batches_per_epoch() == (per_rank + 3) / 4);
      }
      for (std::int64_t e = 0; e < 2; ++e) {
        const auto reference = order_of(epoch_batches(whole, e));
        std::vector<std::vector<data::Batch<>>> parts;
        for (auto& l : shards) parts.push_back(epoch_batches(*l, e));
        std::vector<std::int64_t> interleaved;
        for (std::size_t k = 0; k < parts[0].size(); ++k)
          for (int r = 0; r < w; ++r) {
            REQUIRE(parts[static_cast<std::size_t>(r)].size() == parts[0].size());  // same steps on every rank
            const auto& b = parts[static_cast<std::size_t>(r)][k];
            CHECK(b.size() == parts[0][k].size());                                 // same batch sizes too
            check_contents(ds, b);
            interleaved.insert(interleaved.end(), b.indices.begin(), b.indices.end());
          }
        // The ranks' k-th batches, side by side, are the whole loader's k-th batch; only the
        // n mod W samples at the end of the order are left out.
        REQUIRE(interleaved.size() == static_cast<std::size_t>(per_rank * w));
        CHECK(std::equal(interleaved.begin(), interleaved.end(), reference.begin()));
      }
    }
  }
  data::Loader dl(ds, {.batch_size = 40, .drop_last = true, .prefetch = 0, .num_shards = 2, .shard = 1});
  CHECK(dl.batches_per_epoch() == 1);  // 51 samples per shard: one batch of 40
  CHECK_THROWS_WITH_AS(data::Loader(ds, {.batch_size = 52, .drop_last = true, .num_shards = 2}),
                       doctest::Contains("larger than the shard (51 samples)"), config_error);
  CHECK_THROWS_WITH_AS(data::Loader(ds, {.num_shards = 2, .shard = 2}), doctest::Contains("shard must be in [0, num_shards = 2)"),
                       config_error);
  CHECK_THROWS_WITH_AS(data::Loader(ds, {.num_shards = 0}), doctest::Contains("num_shards must be >= 1"), config_error);
  CHECK_THROWS_WITH_AS(data::Loader(ds, {.num_shards = 104}), doctest::Contains("cannot be cut into 104 shards"),
                       config_error);
}

TEST_CASE("Loader: start_epoch mid-epoch cancels cleanly, then a full new epoch reads correctly") {
  const data::Dataset ds = counting(200);
  for (const int prefetch : {0, 1, 3}) {
    CAPTURE(prefetch);
    data::Loader ref(ds, {.batch_size = 7, .seed = 5, .prefetch = 0});
    const auto expect1 = epoch_batches(ref, 1), expect2 = epoch_batches(ref, 2);
    data::Loader loader(ds, {.batch_size = 7, .seed = 5, .prefetch = prefetch});
    data::Batch<> b;
    for (int rep = 0; rep < 20; ++rep) {  // repeat to shake out timing-dependent cancellations
      loader.start_epoch(0);
      for (int k = 0; k < rep % 5; ++k) REQUIRE(loader.next(b));
      loader.start_epoch(2);  // abandon epoch 0 after rep % 5 batches
      if (rep % 2) loader.start_epoch(1), loader.start_epoch(2);  // twice in a row
      std::vector<data::Batch<>> got;
      while (loader.next(b)) got.push_back(b);
      CHECK(identical(got, expect2));
    }
    CHECK(identical(epoch_batches(loader, 1), expect1));
    CHECK_FALSE(loader.next(b));  // exhausted until the next start_epoch
    CHECK_FALSE(loader.next(b));
  }
}

TEST_CASE("Loader: next() before any start_epoch starts epoch 0") {
  const data::Dataset ds = counting(20);
  data::Loader a(ds, {.batch_size = 6, .seed = 9, .prefetch = 2});
  data::Loader b(ds, {.batch_size = 6, .seed = 9, .prefetch = 2});
  std::vector<data::Batch<>> got;
  data::Batch<> batch;
  while (a.next(batch)) got.push_back(batch);
  CHECK(identical(got, epoch_batches(b, 0)));
}

TEST_CASE("Loader: batch buffers are recycled, not allocated per batch") {
  const data::Dataset ds = counting(240);
  for (const int prefetch : {0, 2}) {
    CAPTURE(prefetch);
    data::Loader loader(ds, {.batch_size = 8, .seed = 1, .prefetch = prefetch});
    data::Batch<> b;
    std::set<const float*> buffers;
    for (std::int64_t e = 0; e < 3; ++e) {
      loader.start_epoch(e);
      while (loader.next(b)) buffers.insert(b.inputs.data.data());
    }
    CHECK(buffers.size() <= static_cast<std::size_t>(prefetch + 1));
  }
}

TEST_CASE("Loader: destroying it at any point does not hang") {
  const data::Dataset ds = counting(500);
  for (int rep = 0; rep < 50; ++rep) {
    data::Loader loader(ds, {.batch_size = 3, .seed = static_cast<std::uint64_t>(rep), .prefetch = 1 + rep % 4});
    data::Batch<> b;
    if (rep % 3 == 0) continue;  // never started
    loader.start_epoch(rep);
    if (rep % 3 == 1) continue;  // started, nothing read: the worker is filling the ring
    for (int k = 0; k < rep % 7; ++k) REQUIRE(loader.next(b));
  }
  CHECK(true);
}

TEST_CASE("Loader: an error while preparing a batch reaches next(), with or without the thread") {
  for (const int prefetch : {0, 2}) {
    CAPTURE(prefetch);
    data::Dataset ds = counting(30, "shrinking");
    data::Loader loader(ds, {.batch_size = 4, .prefetch = prefetch});
    data::Batch<> b;
    loader.start_epoch(0);
    REQUIRE(loader.next(b));
    while (loader.next(b)) {
    }
    ds.features.resize(6, 10);  // the dataset changes under the loader (between epochs)
    ds.labels.resize(10);
    loader.start_epoch(1);
    check_data_error([&] { loader.next(b); }, "shrinking", {"changed size while a Loader was using it"});
    check_data_error([&] { loader.next(b); }, "shrinking", {"changed size"});  // stays failed
  }
}

TEST_CASE("Loader: invalid options throw config_error") {
  const data::Dataset ds = counting(10, "ten");
  CHECK_THROWS_WITH_AS(data::Loader(ds, {.batch_size = 0}), doctest::Contains("batch_size must be >= 1, got 0"),
                       config_error);
  CHECK_THROWS_WITH_AS(data::Loader(ds, {.prefetch = -1}), doctest::Contains("prefetch must be >= 0"), config_error);
  CHECK_THROWS_WITH_AS(data::Loader(ds, {.batch_size = 11, .drop_last = true}),
                       doctest::Contains("leaves no batch"), config_error);
  CHECK_NOTHROW(data::Loader(ds, {.batch_size = 11}));
  const data::Dataset empty = data::subset(ds, 0, 0);
  CHECK_THROWS_WITH_AS(data::Loader(empty, {}), doctest::Contains("the dataset is empty"), config_error);
  data::Dataset bad = ds;
  bad.labels[3] = 70;
  CHECK_THROWS_WITH_AS(data::Loader(bad, {}), doctest::Contains("label 70 at index 3"), data_error);
  data::Loader loader(ds, {.prefetch = 0});
  CHECK_THROWS_AS(loader.start_epoch(-1), config_error);
}

// ---- Fashion-MNIST ---------------------------------------------------------------------

TEST_CASE("fashion_mnist: a missing directory or file says so and how to get the data") {
  TempDir dir;
  const std::string missing = dir.file("no-such-dir");
  check_data_error([&] { data::fashion_mnist(missing); }, missing,
                   {"directory not found", "apt-get install dataset-fashion-mnist", "--data DIR"});
  const std::string gz = dir.file("train-images-idx3-ubyte.gz");
  check_data_error([&] { data::fashion_mnist(dir.path.string()); }, gz,
                   {"not found", "apt-get install dataset-fashion-mnist"});
}

TEST_CASE("fashion_mnist: reads uncompressed and gzip names from any directory") {
  TempDir dir;
  write_plain(dir.file("train-images-idx3-ubyte"), idx_images(3, 2, 3, tiny_pixels));
  write_gzip(dir.file("train-labels-idx1-ubyte.gz"), idx_labels(3, {9, 0, 4}));
  write_gzip(dir.file("t10k-images-idx3-ubyte.gz"), idx_images(2, 2, 3, Bytes(tiny_pixels.begin(), tiny_pixels.begin() + 12)));
  write_plain(dir.file("t10k-labels-idx1-ubyte"), idx_labels(2, {1, 2}));
  const auto [train, test] = data::fashion_mnist(dir.path.string());
  CHECK(train.size() == 3);
  CHECK(test.size() == 2);
  CHECK(train.name == "fashion-mnist/train");
  CHECK(test.name == "fashion-mnist/test");
  CHECK(train.num_classes == 10);
  CHECK(train.labels == std::vector<std::int32_t>{9, 0, 4});
  CHECK(test.features(5, 1) == 68.f / 255.f);
}

TEST_CASE("fashion_mnist: the real data set") {
  if (!fs::is_directory(data::default_fashion_mnist_dir)) {
    MESSAGE("skipped: ", data::default_fashion_mnist_dir, " not installed (apt-get install dataset-fashion-mnist)");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const auto [train, test] = data::fashion_mnist();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("loaded Fashion-MNIST in ", seconds, " s");
  CHECK(train.size() == 60000);
  CHECK(test.size() == 10000);
  for (const auto* ds : {&train, &test}) {
    CHECK(ds->sample_shape == Shape(1, 28, 28));
    CHECK(ds->features.rows() == 784);
    CHECK(ds->num_classes == 10);
    CHECK(ds->features.minCoeff() == 0.f);
    CHECK(ds->features.maxCoeff() == 1.f);
    CHECK_NOTHROW(ds->validate());
  }
  std::vector<int> per_class(10, 0);
  for (const auto y : train.labels) ++per_class[static_cast<std::size_t>(y)];
  for (const int c : per_class) CHECK(c == 6000);
  std::fill(per_class.begin(), per_class.end(), 0);
  for (const auto y : test.labels) ++per_class[static_cast<std::size_t>(y)];
  for (const int c : per_class) CHECK(c == 1000);
}

// ---- regressions from fuzzing the readers (fuzz/, docs/reliability.md) --------------------

TEST_CASE("IDX: a header claiming far more than a tiny file holds reserves no more than the file can hold") {
  TempDir dir;
  const Bytes claim = idx_images(2000, 1000, 1000, tiny_pixels);  // claims 2e9 bytes, holds 18
  const std::string plain = dir.file("claim"), gz = dir.file("claim.gz");
  write_plain(plain, claim);
  write_gzip(gz, claim);
  for (const auto& p : {plain, gz}) {
    CAPTURE(p);
    data::detail::GzReader f(p);
    unsigned char header[16];
    REQUIRE(f.read(header, 16) == 16);
    const std::vector<std::uint8_t> v = f.read_up_to(2000000000u);
    CHECK(v.size() == tiny_pixels.size());
    // Before the fix: 64 MiB reserved for any claim over 64 MiB, whatever the file's size.
    const std::size_t file_size = static_cast<std::size_t>(fs::file_size(p));
    CHECK(v.capacity() <= std::max<std::size_t>(std::size_t{64} << 10, 1032 * file_size));
  }
}

TEST_CASE("IDX: data after the end of the gzip stream is an error; concatenated gzip members are one stream") {
  TempDir dir;
  const Bytes img = idx_images(3, 2, 3, tiny_pixels);
  const std::string whole = dir.file("img.gz");
  write_gzip(whole, img);
  const Bytes gz = read_plain(whole);

  const std::string garbage = dir.file("garbage.gz");  // was silently accepted (zlib's gzread drops it)
  Bytes g = gz;
  for (const char c : std::string("appended")) g.push_back(static_cast<std::uint8_t>(c));
  write_plain(garbage, g);
  check_data_error([&] { data::read_idx_images(garbage); }, garbage,
                   {"unexpected data after the end of the gzip stream", "at compressed byte " + std::to_string(gz.size())});

  const std::string zeros = dir.file("zeros.gz");  // padding is trailing data too
  Bytes z = gz;
  z.resize(z.size() + 512, 0);
  write_plain(zeros, z);
  check_data_error([&] { data::read_idx_images(zeros); }, zeros, {"unexpected data after the end of the gzip stream"});

  // Two members, split inside the header, read as one stream (what `cat a.gz b.gz` makes).
  const std::string a = dir.file("a.gz"), b = dir.file("b.gz"), two = dir.file("two.gz");
  write_gzip(a, Bytes(img.begin(), img.begin() + 7));
  write_gzip(b, Bytes(img.begin() + 7, img.end()));
  Bytes cat_ab = read_plain(a);
  const Bytes bb = read_plain(b);
  cat_ab.insert(cat_ab.end(), bb.begin(), bb.end());
  write_plain(two, cat_ab);
  const data::IdxImages r = data::read_idx_images(two);
  CHECK(r.count == 3);
  CHECK(r.pixels == tiny_pixels);

  const std::string cut = dir.file("cut.gz");  // a second member cut short
  write_plain(cut, Bytes(cat_ab.begin(), cat_ab.end() - 4));
  check_data_error([&] { data::read_idx_images(cut); }, cut, {"corrupt or truncated gzip stream"});
}

TEST_CASE("CSV: a label too large for num_classes = max + 1 says so (was signed overflow)") {
  TempDir dir;
  const std::string p = dir.file("big.csv");
  write_plain(p, "2147483647,1\n");
  check_data_error([&] { data::read_csv(p); }, p,
                   {"line 1, column 1: label '2147483647' is too large (labels must be below 2147483647)"});
  write_plain(p, "0,1\n3000000000,2\n");  // was "is not a non-negative integer"
  check_data_error([&] { data::read_csv(p); }, p, {"line 2, column 1: label '3000000000' is too large"});
  write_plain(p, "2147483646,1\n");  // (inferred, it is above max_inferred_classes: below)
  CHECK(data::read_csv(p, {.num_classes = 2147483647}).num_classes == 2147483647);
}

TEST_CASE("CSV: an inferred class count is capped (a label of 1e9 is not 1e9 classes) unless num_classes is given") {
  TempDir dir;
  const std::string p = dir.file("stray.csv");
  write_plain(p, "0,1\n2,3\n1000000000,0.5\n1,2\n");
  check_data_error([&] { data::read_csv(p); }, p,
                   {"line 3, column 1: label 1000000000 would make 1000000001 classes, more than read_csv infers (65536",
                    "give num_classes"});
  // Given, the count is the caller's: the label is allowed.
  CHECK(data::read_csv(p, {.num_classes = 1000000001}).num_classes == 1000000001);
  // The cap itself: 65535 is the largest label inferred by default; a stated cap moves it.
  write_plain(p, "65535,1\n");
  CHECK(data::read_csv(p).num_classes == 65536);
  write_plain(p, "0,1\n65536,1\n");
  check_data_error([&] { data::read_csv(p); }, p, {"line 2, column 1: label 65536 would make 65537 classes"});
  write_plain(p, "0,1\n10,1\n");
  check_data_error([&] { data::read_csv(p, {.max_inferred_classes = 10}); }, p,
                   {"line 2, column 1: label 10 would make 11 classes, more than read_csv infers (10"});
  CHECK_THROWS_AS(data::read_csv(p, {.max_inferred_classes = 0}), config_error);
}

TEST_CASE("CSV: '+-1' and '++1' are not numbers; bytes outside printable ASCII are escaped in messages") {
  TempDir dir;
  const std::string p = dir.file("sign.csv");
  write_plain(p, "0,+-1.5\n");
  check_data_error([&] { data::read_csv(p); }, p, {"line 1, column 2: '+-1.5' is not a number"});
  write_plain(p, "0,++1\n");
  check_data_error([&] { data::read_csv(p); }, p, {"line 1, column 2: '++1' is not a number"});
  write_plain(p, "+1,+1.5\n");
  CHECK(data::read_csv(p).features(0, 0) == 1.5f);
  write_plain(p, std::string("0,1\n1,a\x01\x7f\xc3\xa9") + "b\n");
  check_data_error([&] { data::read_csv(p); }, p, {"line 2, column 2: 'a\\x01\\x7F\\xC3\\xA9b' is not a number"});
  write_plain(p, "0\t1\n");
  check_data_error([&] { data::read_csv(p, {.delimiter = ';'}); }, p, {"(delimiter ';')"});
}

TEST_CASE("CSV: the feature matrix is bounded by the file's bytes, not by width x lines") {
  TempDir dir;
  const std::string p = dir.file("wide.csv");
  // One row of 4000 features, then 4000 blank lines: 12 KB that used to allocate 64 MB.
  std::string text = "1";
  for (int i = 0; i < 4000; ++i) text += ",0";
  text += "\n" + std::string(4000, '\n');
  write_plain(p, text);
  const data::Dataset ds = data::read_csv(p);
  CHECK(ds.size() == 1);
  CHECK(ds.sample_shape == Shape(4000));
  CHECK(ds.labels == std::vector<std::int32_t>{1});
  // A bad row that arrives when the bound is reached still has room for its values before
  // it is rejected (ASan would see the write past the end).
  write_plain(p, "0,1,2,3\n1,2,,");
  check_data_error([&] { data::read_csv(p); }, p, {"line 2, column 3: '' is not a number"});
  write_plain(p, "0,1,2,3\n1,2,3,4\n2,5,6,7");
  const data::Dataset ok = data::read_csv(p);
  CHECK(ok.size() == 3);
  CHECK(ok.features(2, 2) == 7.f);
}
