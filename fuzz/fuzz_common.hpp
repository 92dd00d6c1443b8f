// fuzz/fuzz_common.hpp -- shared plumbing of the libFuzzer targets (fuzz/fuzz_*.cpp).
//
// The readers take paths, so an input is written to an in-memory file (memfd) and read back
// through /proc/self/fd/N: no disk traffic, nothing to clean up. `expect_rejection_or_ok`
// runs a reader call and treats fasttrain's documented exceptions (data_error, config_error,
// shape_error) as the expected way to reject a bad input -- after checking their message
// is useful -- and lets everything else through to libFuzzer as a finding: any other
// exception ("deadly signal" after std::terminate), a crash, a sanitizer report, a hang
// (-timeout) or a large allocation (-malloc_limit_mb).
//
// FASTTRAIN_FUZZ_VERBOSE=1 prints every rejection message to stderr, which is how to review
// the messages a corpus produces: `FASTTRAIN_FUZZ_VERBOSE=1 ./fuzz_csv corpus/*`.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <zlib.h>

#include "fasttrain/core/error.hpp"

namespace fuzz {

[[noreturn]] inline void fail(const std::string& what) {
  std::fprintf(stderr, "\n==== fasttrain fuzz finding: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

inline bool verbose() {
  static const bool v = [] {
    const char* e = std::getenv("FASTTRAIN_FUZZ_VERBOSE");
    return e && *e && std::string_view(e) != "0";
  }();
  return v;
}

/// An in-memory file, rewritten for each input; `path()` opens it afresh (offset 0).
class MemFile {
 public:
  explicit MemFile(const char* name) {
    fd_ = memfd_create(name, MFD_CLOEXEC);
    if (fd_ < 0) fail(std::string("memfd_create failed: ") + std::strerror(errno));
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;

  void write(const void* data, std::size_t n) {
    if (ftruncate(fd_, 0) != 0) fail("ftruncate failed");
    const auto* p = static_cast<const unsigned char*>(data);
    std::size_t done = 0;
    while (done < n) {
      const ssize_t w = pwrite(fd_, p + done, n - done, static_cast<off_t>(done));
      if (w <= 0) fail(std::string("pwrite failed: ") + std::strerror(errno));
      done += static_cast<std::size_t>(w);
    }
  }
  void write(const std::vector<std::uint8_t>& v) { write(v.data(), v.size()); }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

/// `data` as one gzip member (what `gzip -1` would write).
inline std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t size) {
  z_stream s{};
  if (deflateInit2(&s, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) fail("deflateInit2 failed");
  std::vector<std::uint8_t> out(deflateBound(&s, static_cast<uLong>(size)) + 32);
  s.next_in = const_cast<Bytef*>(data);
  s.avail_in = static_cast<uInt>(size);
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  if (deflate(&s, Z_FINISH) != Z_STREAM_END) fail("deflate did not finish");
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

// A documented rejection must say something; a data_error must start with the path it names,
// and that path must be one of the files the call was given.
inline void check_message(const char* kind, const std::string& what) {
  if (what.empty()) fail(std::string(kind) + " with an empty message");
  if (verbose()) std::fprintf(stderr, "[%s] %s\n", kind, what.c_str());
}

inline void check_data_error(const fasttrain::data_error& e, std::initializer_list<std::string_view> paths) {
  const std::string what = e.what();
  check_message("data_error", what);
  bool known = false;
  for (auto p : paths) known = known || e.path() == p;
  if (!known) fail("data_error names path '" + e.path() + "', which is none of the files read: " + what);
  const std::string prefix = e.path() + ": ";
  if (what.rfind(prefix, 0) != 0 || what.size() == prefix.size())
    fail("data_error message does not read '<path>: <problem>': " + what);
}

/// Runs `call`; returns true when it returned normally, false when it threw one of the
/// documented exceptions (after checking the message). Anything else propagates.
template <class F>
bool accepted(F&& call, std::initializer_list<std::string_view> paths) {
  try {
    call();
    return true;
  } catch (const fasttrain::data_error& e) {
    check_data_error(e, paths);
  } catch (const fasttrain::config_error& e) {
    check_message("config_error", e.what());
  } catch (const fasttrain::shape_error& e) {
    check_message("shape_error", e.what());
  }
  return false;
}

}  // namespace fuzz
