// fasttrain/io/checkpoint.hpp -- the checkpoint file: versioned, checksummed, written
// atomically.
//
// Layout (all integers little-endian):
//
//   offset  size  field
//   0       8     magic "FTCKPT\r\n"
//   8       4     format version (checkpoint_version)
//   12      4     number of sections (1..max_sections)
//   16      4     CRC32 of bytes 0..15
//   then, per section:
//           4     name length (1..max_section_name)
//           n     name
//           8     payload size
//           4     CRC32 of name and payload
//           m     payload (an io::StateWriter byte string)
//
// Nothing may follow the last section. The reader refuses, with a data_error naming the
// file: a short file, a wrong magic number ("not a fasttrain checkpoint"), a corrupt
// header, another format version (saying which), a truncated section and a section whose
// CRC does not match (saying which section).
//
// CheckpointWriter (and write_checkpoint(), built on it) writes to a temporary file in the
// same directory, streaming each section through its CRC, fsyncs it, renames it over the
// destination and fsyncs the directory: a process killed at any instant leaves either the
// previous file or the new one, never a torn one (POSIX rename is atomic).
#pragma once

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/io/archive.hpp"

namespace fasttrain::io {

inline constexpr char checkpoint_magic[8] = {'F', 'T', 'C', 'K', 'P', 'T', '\r', '\n'};
// 2: the trainer section holds epoch_batch_size; 3: history.epochs; 4: vectors of numbers are one
// packed record (record_kind::array), EMA averages BatchNorm statistics and counts its updates
inline constexpr std::uint32_t checkpoint_version = 4;
inline constexpr std::uint32_t max_sections = 64;
inline constexpr std::uint32_t max_section_name = 64;

/// CRC32 of `a` followed by `b`, continued from `crc` (0: a fresh one).
inline std::uint32_t crc32_of(std::string_view a, std::string_view b = {}, std::uint32_t crc = 0) {
  uLong c = crc;
  // zlib takes uInt lengths: feed large buffers in pieces.
  for (std::string_view s : {a, b})
    while (!s.empty()) {
      const auto n = static_cast<uInt>(std::min<std::size_t>(s.size(), 1u << 30));
      c = ::crc32(c, reinterpret_cast<const Bytef*>(s.data()), n);
      s.remove_prefix(n);
    }
  return static_cast<std::uint32_t>(c);
}

/// A checkpoint in memory: named sections of bytes, in file order.
struct CheckpointData {
  std::vector<std::pair<std::string, std::string>> sections;

  void add(std::string name, std::string bytes) {
    fasttrain::detail::require(!name.empty() && name.size() <= max_section_name,
                               "fasttrain::io: a section name must have 1 to ", max_section_name, " characters");
    fasttrain::detail::require(!find(name), "fasttrain::io: duplicate section '", name, "'");
    fasttrain::detail::require(sections.size() < max_sections, "fasttrain::io: more than ", max_sections, " sections");
    sections.emplace_back(std::move(name), std::move(bytes));
  }
  const std::string* find(std::string_view name) const {
    for (const auto& [n, b] : sections)
      if (n == name) return &b;
    return nullptr;
  }
};

namespace detail {
template <class T>
void put_raw(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
template <class T>
T get_raw(std::string_view in, std::size_t at) {
  T v;
  std::memcpy(&v, in.data() + at, sizeof(T));
  return v;
}
inline std::string errno_text() { return std::strerror(errno); }
}  // namespace detail

/// The file's bytes.
inline std::string encode_checkpoint(const CheckpointData& ck) {
  std::string out(checkpoint_magic, sizeof(checkpoint_magic));
  detail::put_raw(out, checkpoint_version);
  detail::put_raw(out, static_cast<std::uint32_t>(ck.sections.size()));
  detail::put_raw(out, crc32_of(out));
  for (const auto& [name, bytes] : ck.sections) {
    detail::put_raw(out, static_cast<std::uint32_t>(name.size()));
    out.append(name);
    detail::put_raw(out, static_cast<std::uint64_t>(bytes.size()));
    detail::put_raw(out, crc32_of(name, bytes));
    out.append(bytes);
  }
  return out;
}

/// Parses a checkpoint file's bytes; `origin` (usually the path) names it in errors.
inline CheckpointData decode_checkpoint(std::string_view in, const std::string& origin) {
  constexpr std::size_t header = 20;
  if (in.size() < header)
    throw data_error(origin, fasttrain::detail::cat("is truncated: ", in.size(), " bytes, shorter than the ", header,
                                                    "-byte checkpoint header"));
  if (std::memcmp(in.data(), checkpoint_magic, sizeof(checkpoint_magic)) != 0)
    throw data_error(origin, "is not a fasttrain checkpoint (wrong magic number)");
  if (detail::get_raw<std::uint32_t>(in, 16) != crc32_of(in.substr(0, 16)))
    throw data_error(origin, "has a corrupt header (CRC32 mismatch)");
  const auto version = detail::get_raw<std::uint32_t>(in, 8);
  if (version != checkpoint_version)
    throw data_error(origin, fasttrain::detail::cat("has checkpoint format version ", version, "; this build of fasttrain reads version ",
                                                    checkpoint_version,
                                                    version > checkpoint_version ? " (the file is from a newer fasttrain)"
                                                                                 : " (the file is from an older fasttrain)"));
  const auto count = detail::get_raw<std::uint32_t>(in, 12);
  if (count == 0 || count > max_sections)
    throw data_error(origin, fasttrain::detail::cat("claims ", count, " sections (1 to ", max_sections, " allowed)"));
  CheckpointData ck;
  std::size_t pos = header;
  for (std::uint32_t i = 0; i < count; ++i) {
    const std::string which = fasttrain::detail::cat("section ", i + 1, " of ", count);
    auto truncated = [&](std::string_view where) {
      return data_error(origin, fasttrain::detail::cat("is truncated in ", where, " (file ends at byte ", in.size(), ")"));
    };
    if (in.size() - pos < 4) throw truncated(which);
    const auto name_len = detail::get_raw<std::uint32_t>(in, pos);
    pos += 4;
    if (name_len == 0 || name_len > max_section_name)
      throw data_error(origin, fasttrain::detail::cat(which, " has a name length of ", name_len, " (1 to ", max_section_name,
                                                      " allowed): the file is corrupt"));
    if (in.size() - pos < name_len + 12) throw truncated(which);
    std::string name(in.substr(pos, name_len));
    pos += name_len;
    const auto size = detail::get_raw<std::uint64_t>(in, pos);
    const auto crc = detail::get_raw<std::uint32_t>(in, pos + 8);
    pos += 12;
    if (size > in.size() - pos) throw truncated("section '" + name + "'");
    std::string bytes(in.substr(pos, static_cast<std::size_t>(size)));
    pos += static_cast<std::size_t>(size);
    if (crc32_of(name, bytes) != crc)
      throw data_error(origin, "section '" + name + "' is corrupt (CRC32 mismatch)");
    if (ck.find(name)) throw data_error(origin, "has section '" + name + "' twice");
    ck.sections.emplace_back(std::move(name), std::move(bytes));
  }
  if (pos != in.size())
    throw data_error(origin, fasttrain::detail::cat("has ", in.size() - pos, " bytes after its last section: the file is corrupt"));
  return ck;
}

/// Reads and checks a checkpoint file.
inline CheckpointData read_checkpoint(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw data_error(path, "cannot open checkpoint: " + detail::errno_text());
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) throw data_error(path, "read error");
  return decode_checkpoint(bytes, path);
}

/// Writes a checkpoint file section by section, streaming each section's records to a
/// temporary file in the destination's directory through the CRC (a section's size and CRC
/// are written into its header once it is complete), so the file is never held in memory;
/// commit() fsyncs it, renames it over the destination and fsyncs the directory. Destroyed
/// without commit() (an exception), it removes the temporary file and leaves the
/// destination as it was.
///
///   io::CheckpointWriter out(path, 2);
///   out.section("model", [&](io::StateWriter& ar) { model.state(ar); });
///   out.section("trainer", [&](io::StateWriter& ar) { ... });
///   out.commit();
class CheckpointWriter {
 public:
  CheckpointWriter(std::string path, std::uint32_t sections, std::size_t buffer = std::size_t{1} << 20)
      : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())), sections_(sections),
        buffer_(buffer) {
    fasttrain::detail::require(sections >= 1 && sections <= max_sections, "fasttrain::io: a checkpoint holds 1 to ",
                               max_sections, " sections, not ", sections);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) throw data_error(tmp_, "cannot create checkpoint file: " + detail::errno_text());
    std::string head(checkpoint_magic, sizeof(checkpoint_magic));
    detail::put_raw(head, checkpoint_version);
    detail::put_raw(head, sections_);
    detail::put_raw(head, crc32_of(head));
    put(head.data(), head.size());
  }
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  ~CheckpointWriter() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }

  /// Appends a section whose payload `write(StateWriter&)` produces.
  template <class F>
  void section(std::string_view name, F&& write) {
    fasttrain::detail::require(!name.empty() && name.size() <= max_section_name,
                               "fasttrain::io: a section name must have 1 to ", max_section_name, " characters");
    fasttrain::detail::require(std::find(names_.begin(), names_.end(), name) == names_.end(),
                               "fasttrain::io: duplicate section '", name, "'");
    fasttrain::detail::require(names_.size() < sections_, "fasttrain::io: more than the ", sections_,
                               " sections announced");
    names_.emplace_back(name);
    std::string head;
    detail::put_raw(head, static_cast<std::uint32_t>(name.size()));
    head.append(name);
    const std::uint64_t at = offset_ + head.size();  // where the size and CRC go
    head.append(12, '\0');
    put(head.data(), head.size());
    std::uint32_t crc = crc32_of(name);
    std::uint64_t size = 0;
    StateWriter w(
        [&](const char* data, std::size_t n) {
          crc = crc32_of(std::string_view(data, n), {}, crc);
          size += n;
          put(data, n);
        },
        buffer_);
    write(w);
    w.flush();
    std::string tail;
    detail::put_raw(tail, size);
    detail::put_raw(tail, crc);
    if (::pwrite(fd_, tail.data(), tail.size(), static_cast<off_t>(at)) != static_cast<ssize_t>(tail.size()))
      fail("cannot write checkpoint: ");
  }
  /// A section of bytes already encoded.
  void section(std::string_view name, std::string_view bytes) {
    section(name, [&](StateWriter& w) { w.append_raw(bytes); });
  }

  /// Makes the file durable and moves it over the destination.
  void commit() {
    if (names_.size() != sections_)
      throw std::logic_error(fasttrain::detail::cat("fasttrain::io::CheckpointWriter: ", names_.size(), " of the ",
                                                    sections_, " sections announced were written"));
    namespace fs = std::filesystem;
    if (::fsync(fd_) != 0) fail("cannot flush checkpoint to disk: ");
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("cannot flush checkpoint to disk: ");
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
      const std::string why = detail::errno_text();
      throw data_error(path_, "cannot move the new checkpoint into place: " + why);
    }
    committed_ = true;
    const fs::path target(path_);
    const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {  // make the rename itself durable
      ::fsync(dfd);
      ::close(dfd);
    }
  }
  /// Bytes written so far.
  std::uint64_t size() const { return offset_; }

 private:
  void put(const char* data, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
      const ssize_t k = ::write(fd_, data + done, n - done);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) fail("cannot write checkpoint: ");
      done += static_cast<std::size_t>(k);
    }
    offset_ += n;
  }
  [[noreturn]] void fail(const char* what) const { throw data_error(tmp_, what + detail::errno_text()); }

  std::string path_, tmp_;
  std::uint32_t sections_;
  std::size_t buffer_;
  int fd_ = -1;
  std::uint64_t offset_ = 0;
  std::vector<std::string> names_;
  bool committed_ = false;
};

/// Writes `ck` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
inline void write_checkpoint(const std::string& path, const CheckpointData& ck) {
  CheckpointWriter out(path, static_cast<std::uint32_t>(ck.sections.size()));
  for (const auto& [name, bytes] : ck.sections) out.section(name, std::string_view(bytes));
  out.commit();
}

/// Checkpoints named `<prefix>-<step>.ftc` in `dir`, oldest first (by step).
inline std::vector<std::pair<std::int64_t, std::string>> list_checkpoints(const std::string& dir,
                                                                          const std::string& prefix = "ckpt") {
  namespace fs = std::filesystem;
  std::vector<std::pair<std::int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const std::string head = prefix + "-";
    if (name.size() <= head.size() + 4 || name.compare(0, head.size(), head) != 0 ||
        name.compare(name.size() - 4, 4, ".ftc") != 0)
      continue;
    const std::string digits = name.substr(head.size(), name.size() - head.size() - 4);
    if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// The newest readable checkpoint in `dir` (nullopt when there is none). A file that does
/// not read back (it should not happen: writes are atomic) is reported on stderr and skipped.
inline std::optional<std::string> latest_checkpoint(const std::string& dir, const std::string& prefix = "ckpt") {
  auto all = list_checkpoints(dir, prefix);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      (void)read_checkpoint(it->second);
      return it->second;
    } catch (const data_error& e) {
      std::cerr << "fasttrain: skipping unreadable checkpoint: " << e.what() << "\n";
    }
  }
  return std::nullopt;
}

/// Loads only the model's state (parameters, BatchNorm statistics, layer RNGs) from a
/// checkpoint written by Trainer::save_checkpoint: to evaluate or deploy a saved model.
/// The model must have the type that wrote it (checked record by record).
template <class Model>
void load_model(const std::string& path, Model& model) {
  const CheckpointData ck = read_checkpoint(path);
  const std::string* bytes = ck.find("model");
  if (!bytes) throw data_error(path, "has no 'model' section: not a Trainer checkpoint");
  StateReader r(*bytes, path, "model");
  model.state(r);
  r.finish();
}

/// Where methods::Checkpoint writes rank `rank`'s checkpoints in a data-parallel run
/// (dist::DataParallel): `<dir>/rank-<rank>`.
inline std::string rank_directory(const std::string& dir, int rank) {
  return (std::filesystem::path(dir) / ("rank-" + std::to_string(rank))).string();
}

/// The file name the Checkpoint method uses for step `step`.
inline std::string checkpoint_path(const std::string& dir, const std::string& prefix, std::int64_t step) {
  std::string digits = std::to_string(step);
  if (digits.size() < 10) digits.insert(0, 10 - digits.size(), '0');
  return (std::filesystem::path(dir) / (prefix + "-" + digits + ".ftc")).string();
}

}  // namespace fasttrain::io
