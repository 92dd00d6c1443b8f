// fasttrain/data/idx.hpp -- reader for the IDX format of MNIST and Fashion-MNIST.
//
//   data::Dataset train = data::load_idx("train-images-idx3-ubyte.gz",
//                                        "train-labels-idx1-ubyte.gz", 10, "fashion-mnist/train");
//   // features in [0, 1], one 28*28 column per image, sample_shape {1, 28, 28}
//
// Files may be gzip-compressed or plain (detected by the gzip magic bytes). Everything read is
// checked -- magic number, dimensions, truncation, trailing bytes (after the gzip stream
// too), label range, the two files agreeing on the count, the gzip stream itself -- and every problem is reported
// as data_error(path, problem). A corrupt header never makes the reader allocate much more
// memory than the file really holds (headers claiming over 2^31 bytes are refused outright,
// and buffers grow only as data arrives, from 64 KiB). Link with -lz.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/data/dataset.hpp"

namespace fasttrain::data {

namespace detail {

using fasttrain::detail::cat;

/// A read-only gzip-or-plain file whose errors are data_errors. A file that starts with the
/// gzip magic bytes is inflated (one gzip member or several concatenated, as `gzip -d` reads
/// them); any other file is read as it is. Unlike zlib's gzread, which silently drops bytes
/// after the last gzip member that do not start another member, such trailing data is an
/// error here, as trailing data is in a plain file.
class GzReader {
 public:
  explicit GzReader(const std::string& path) : path_(path), in_(std::size_t{1} << 17) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw data_error(path_, "cannot open: is a directory, expected a file");
    errno = 0;
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) {
      const int e = errno;
      throw data_error(path_, cat("cannot open (", e ? std::strerror(e) : "unknown error", ")"));
    }
    try {
      refill();
    } catch (...) {
      std::fclose(file_);
      throw;
    }
    gzip_ = in_len_ >= 2 && in_[0] == 0x1f && in_[1] == 0x8b;
    if (std::filesystem::is_regular_file(path, ec)) {
      const std::uintmax_t size = std::filesystem::file_size(path, ec);
      if (!ec && size != static_cast<std::uintmax_t>(-1)) size_ = static_cast<std::uint64_t>(size);
    }
    if (gzip_) {
      if (inflateInit2(&zs_, 15 + 16) != Z_OK) {
        std::fclose(file_);
        gzip_ = false;
        throw data_error(path_, "out of memory while starting to decompress");
      }
      zs_.next_in = in_.data();
      zs_.avail_in = static_cast<uInt>(in_len_);
    }
  }
  ~GzReader() {
    if (gzip_) inflateEnd(&zs_);
    if (file_) std::fclose(file_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  const std::string& path() const { return path_; }

  /// Reads up to `n` bytes into `buf`; returns how many were read (fewer only at the end
  /// of the data). Throws data_error on an I/O error, a corrupt or truncated gzip stream,
  /// or data after the end of the gzip stream.
  std::size_t read(void* buf, std::size_t n) {
    auto* out = static_cast<unsigned char*>(buf);
    return gzip_ ? inflate_into(out, n) : copy_into(out, n);
  }

  /// Reads `expected` bytes into a vector, so that a header that claims more than the file
  /// holds costs no more memory than the file can really hold: the vector is reserved up
  /// to what the file's size allows (its size when plain, 1032 times it -- deflate's
  /// largest ratio -- when gzip), and otherwise grows as data arrives, geometrically from
  /// 64 KiB. Returns fewer bytes when the data ends early.
  std::vector<std::uint8_t> read_up_to(std::uint64_t expected) {
    constexpr std::uint64_t max_chunk = std::uint64_t{16} << 20;
    std::uint64_t chunk = std::uint64_t{64} << 10;
    std::vector<std::uint8_t> v;
    if (size_ > 0) {
      const std::uint64_t can_hold = gzip_ ? size_ * 1032 : size_;
      v.reserve(static_cast<std::size_t>(std::min(expected, can_hold)));
    }
    std::uint64_t got = 0;
    while (got < expected) {
      const std::uint64_t want = std::min(expected - got, chunk);
      v.resize(static_cast<std::size_t>(got + want));
      const std::size_t r = read(v.data() + got, static_cast<std::size_t>(want));
      got += r;
      if (r < want) break;
      chunk = std::min(chunk * 2, max_chunk);
    }
    v.resize(static_cast<std::size_t>(got));
    return v;
  }

  /// True when at least one more byte can be read.
  bool has_more() {
    unsigned char b = 0;
    return read(&b, 1) == 1;
  }

 private:
  // Reads the next block of the file into in_ (in_len_ bytes, 0 at the end of the file).
  void refill() {
    in_pos_ = 0;
    in_len_ = std::fread(in_.data(), 1, in_.size(), file_);
    if (in_len_ < in_.size() && std::ferror(file_)) read_error();
  }

  [[noreturn]] void read_error() const {
    const int e = errno;
    throw data_error(path_, cat("read error (", e ? std::strerror(e) : "unknown error", ")"));
  }

  std::size_t copy_into(unsigned char* out, std::size_t n) {
    std::size_t got = 0;
    while (got < n) {
      if (in_pos_ == in_len_) {
        if (n - got >= in_.size()) {  // a large read goes straight to the caller's buffer
          const std::size_t want = n - got;
          const std::size_t r = std::fread(out + got, 1, want, file_);
          got += r;
          if (r < want && std::ferror(file_)) read_error();
          break;  // all read, or the end of the file
        }
        refill();
        if (in_len_ == 0) break;
      }
      const std::size_t k = std::min(n - got, in_len_ - in_pos_);
      std::memcpy(out + got, in_.data() + in_pos_, k);
      in_pos_ += k;
      got += k;
    }
    return got;
  }

  std::size_t inflate_into(unsigned char* out, std::size_t n) {
    std::size_t got = 0;
    while (got < n && !done_) {
      if (zs_.avail_in == 0) {
        refill();
        zs_.next_in = in_.data();
        zs_.avail_in = static_cast<uInt>(in_len_);
      }
      const uInt avail_in = zs_.avail_in;
      const bool at_eof = avail_in == 0;
      const auto want = static_cast<uInt>(std::min<std::size_t>(n - got, std::size_t{1} << 30));
      zs_.next_out = out + got;
      zs_.avail_out = want;
      const int r = inflate(&zs_, Z_NO_FLUSH);
      const bool progress = zs_.avail_out != want || zs_.avail_in != avail_in;
      got += want - zs_.avail_out;
      if (r == Z_STREAM_END) {
        // The end of one gzip member: the file must end here or another member start.
        compressed_ += zs_.total_in;
        if (zs_.avail_in == 0) {
          refill();
          zs_.next_in = in_.data();
          zs_.avail_in = static_cast<uInt>(in_len_);
        }
        if (zs_.avail_in == 0) {
          done_ = true;
        } else if (zs_.avail_in >= 2 ? (zs_.next_in[0] == 0x1f && zs_.next_in[1] == 0x8b) : zs_.next_in[0] == 0x1f) {
          inflateReset(&zs_);
        } else {
          throw data_error(path_, cat("unexpected data after the end of the gzip stream (at compressed byte ",
                                      compressed_, "); the file is corrupt or has something appended"));
        }
      } else if (r == Z_MEM_ERROR) {
        throw data_error(path_, "out of memory while decompressing");
      } else if (r == Z_BUF_ERROR && at_eof) {
        throw data_error(path_, "corrupt or truncated gzip stream (zlib: unexpected end of file)");
      } else if ((r != Z_OK && r != Z_BUF_ERROR) || !progress) {
        throw data_error(path_, cat("corrupt or truncated gzip stream (zlib: ", zs_.msg ? zs_.msg : "error ",
                                    zs_.msg ? "" : std::to_string(r), ")"));
      }
    }
    return got;
  }

  std::string path_;
  std::FILE* file_ = nullptr;
  std::vector<unsigned char> in_;  // read buffer (128 KiB)
  std::size_t in_pos_ = 0, in_len_ = 0;
  bool gzip_ = false, done_ = false;
  z_stream zs_{};
  std::uint64_t compressed_ = 0;  // compressed bytes of the gzip members finished so far
  std::uint64_t size_ = 0;        // the file's size in bytes; 0 when unknown (not a regular file)
};

inline std::uint32_t big_endian32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

inline std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

inline constexpr std::uint32_t idx_images_magic = 0x00000803;  // unsigned bytes, 3 dimensions
inline constexpr std::uint32_t idx_labels_magic = 0x00000801;  // unsigned bytes, 1 dimension
/// The largest payload accepted (2 GiB): anything bigger is a corrupt header, not MNIST.
inline constexpr std::uint64_t idx_max_bytes = std::uint64_t{1} << 31;

// Reads an IDX header of `words` 32-bit words (magic first) and checks the magic.
inline void read_idx_header(GzReader& f, std::uint32_t* words, int nwords, std::uint32_t magic,
                            const char* what) {
  unsigned char h[16] = {};
  const std::size_t need = static_cast<std::size_t>(nwords) * 4;
  const std::size_t got = f.read(h, need);
  if (got == 0) throw data_error(f.path(), cat("is empty, expected an IDX ", what, " file"));
  if (got >= 4) {
    const std::uint32_t m = big_endian32(h);
    if (m != magic) {
      std::string hint;
      if (m == idx_labels_magic) hint = "; this looks like an IDX labels file (images and labels swapped?)";
      else if (m == idx_images_magic) hint = "; this looks like an IDX images file (images and labels swapped?)";
      throw data_error(f.path(), cat("bad magic number ", hex32(m), ", expected ", hex32(magic), " (IDX unsigned-byte ",
                                     what, ", ", nwords - 1, nwords - 1 == 1 ? " dimension)" : " dimensions)", hint));
    }
  }
  if (got < need)
    throw data_error(f.path(), cat("truncated: the file holds only ", got, " bytes, an IDX ", what, " header needs ",
                                   need));
  for (int i = 0; i < nwords; ++i) words[i] = big_endian32(h + 4 * i);
}

}  // namespace detail

/// The raw content of an IDX images file: `count` images of rows x cols bytes, row-major,
/// image after image.
struct IdxImages {
  std::int64_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;  ///< count * rows * cols bytes
};

/// Reads an IDX3 unsigned-byte images file (gzip or plain). Throws data_error(path, problem)
/// for a missing file, bad magic, absurd dimensions, truncation, trailing data or a corrupt
/// gzip stream.
inline IdxImages read_idx_images(const std::string& path) {
  using detail::cat;
  detail::GzReader f(path);
  std::uint32_t h[4];
  detail::read_idx_header(f, h, 4, detail::idx_images_magic, "images");
  const std::uint64_t count = h[1], rows = h[2], cols = h[3];
  const auto dims = [&] { return cat(count, " images of ", rows, "x", cols); };
  if (count == 0 || rows == 0 || cols == 0) throw data_error(path, cat("absurd dimensions: ", dims()));
  // Each factor is < 2^32; check the product in two steps so it cannot overflow 64 bits.
  const std::uint64_t per_image = rows * cols;
  if (per_image > detail::idx_max_bytes || count * per_image > detail::idx_max_bytes)
    throw data_error(path, cat("absurd dimensions: ", dims(), " would be more than 2^31 bytes"));
  const std::uint64_t expected = count * per_image;

  IdxImages out;
  out.count = static_cast<std::int64_t>(count);
  out.rows = static_cast<std::int64_t>(rows);
  out.cols = static_cast<std::int64_t>(cols);
  out.pixels = f.read_up_to(expected);
  if (out.pixels.size() < expected)
    throw data_error(path, cat("truncated: header says ", dims(), " = ", expected, " bytes, file holds ",
                               out.pixels.size()));
  if (f.has_more()) throw data_error(path, cat("unexpected data after the last image (header says ", dims(), ")"));
  return out;
}

/// Reads an IDX1 unsigned-byte labels file (gzip or plain) and checks every label lies in
/// [0, num_classes). Throws data_error(path, problem); config_error unless
/// 1 <= num_classes <= 256.
inline std::vector<std::int32_t> read_idx_labels(const std::string& path, int num_classes) {
  using detail::cat;
  fasttrain::detail::require(num_classes >= 1 && num_classes <= 256, "data::read_idx_labels: num_classes must be in [1, 256] for ",
                             path, ", got ", num_classes);
  detail::GzReader f(path);
  std::uint32_t h[2];
  detail::read_idx_header(f, h, 2, detail::idx_labels_magic, "labels");
  const std::uint64_t count = h[1];
  if (count == 0) throw data_error(path, "absurd dimensions: 0 labels");
  if (count > detail::idx_max_bytes)
    throw data_error(path, cat("absurd dimensions: ", count, " labels would be more than 2^31 bytes"));
  const std::vector<std::uint8_t> raw = f.read_up_to(count);
  if (raw.size() < count)
    throw data_error(path, cat("truncated: header says ", count, " labels, file holds ", raw.size()));
  if (f.has_more()) throw data_error(path, cat("unexpected data after the last label (header says ", count, ")"));
  std::vector<std::int32_t> labels(raw.size());
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] >= num_classes)
      throw data_error(path, cat("label ", int{raw[i]}, " at index ", i, " is out of range [0, ", num_classes, ")"));
    labels[i] = raw[i];
  }
  return labels;
}

/// Loads an IDX images/labels pair as a Dataset: features are pixel / 255 (in [0, 1]), one
/// column per image, sample_shape {1, rows, cols}. Throws data_error naming the file at fault,
/// including when the two files disagree on the number of samples.
inline Dataset load_idx(const std::string& images_path, const std::string& labels_path, int num_classes,
                        std::string name) {
  IdxImages img = read_idx_images(images_path);
  std::vector<std::int32_t> labels = read_idx_labels(labels_path, num_classes);
  if (static_cast<std::int64_t>(labels.size()) != img.count)
    throw data_error(labels_path, detail::cat("holds ", labels.size(), " labels but the images file ", images_path,
                                              " holds ", img.count, " images"));
  Dataset ds;
  const Eigen::Index sample = static_cast<Eigen::Index>(img.rows * img.cols);
  ds.features.resize(sample, static_cast<Eigen::Index>(img.count));
  float* dst = ds.features.data();
  const std::uint8_t* src = img.pixels.data();
  const std::size_t n = img.pixels.size();
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]) / 255.f;
  ds.labels = std::move(labels);
  ds.sample_shape = Shape(1, img.rows, img.cols);
  ds.num_classes = num_classes;
  ds.name = std::move(name);
  return ds;
}

}  // namespace fasttrain::data
