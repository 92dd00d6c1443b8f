// fasttrain/io/archive.hpp -- saving and restoring the state of models, optimizers and
// methods, for checkpoints.
//
// A component describes its state once, in one member template used for both directions:
//
//   template <class Archive>
//   void state(Archive& ar) {
//     ar.config("momentum", momentum_);   // a hyperparameter: saved; on load, must be equal
//     ar("velocity", velocity_);          // state: saved; on load, replaced
//   }
//
// StateWriter appends named, typed records; StateReader reads them back in the same order
// and checks each record's name, type and (for matrices whose size is already set) shape,
// so a checkpoint from another model or recipe is refused with a message that names the
// record, instead of silently loading numbers into the wrong places. `ar.scope(name)`
// prefixes the names of the records written inside it ("model/3.Conv2d<32,64,5,1,2>/weight").
//
// Supported values: bool, integers, float, double, std::string, fasttrain::Rng, Eigen
// dense matrices (float), and std::vector of any of these. Records are little-endian. A
// vector of numbers (bool, integers, float, double) is one typed record, its elements packed
// at their own width (a 60k-entry epoch order is 480 KB of int64, not 60k named records);
// a vector of anything else is a count followed by one record per element.
//
// A StateWriter keeps its bytes in memory, or, given a sink, hands them on in pieces of
// about `buffer` bytes (a matrix's data straight from the matrix): a checkpoint is then
// streamed to its file without being held whole (io/checkpoint.hpp).
#pragma once

#include <Eigen/Core>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/core/rng.hpp"

namespace fasttrain::io {

static_assert(std::endian::native == std::endian::little,
              "fasttrain::io: checkpoints are written little-endian; this target is big-endian and would need "
              "byte swapping in io/archive.hpp");

/// The type of a record, stored in front of its value.
enum class record_kind : std::uint8_t { i64 = 1, f64 = 2, f32_matrix = 3, text = 4, rng = 5, count = 6, array = 7 };

/// The element type of an `array` record (stored after the record's kind), then the element
/// count (8 bytes) and the elements.
enum class element_kind : std::uint8_t { b8 = 1, i8, u8, i16, u16, i32, u32, i64, u64, f32, f64 };

inline const char* element_name(element_kind k) {
  switch (k) {
    case element_kind::b8: return "bool";
    case element_kind::i8: return "int8";
    case element_kind::u8: return "uint8";
    case element_kind::i16: return "int16";
    case element_kind::u16: return "uint16";
    case element_kind::i32: return "int32";
    case element_kind::u32: return "uint32";
    case element_kind::i64: return "int64";
    case element_kind::u64: return "uint64";
    case element_kind::f32: return "float32";
    case element_kind::f64: return "float64";
  }
  return "unknown";
}

inline const char* kind_name(record_kind k) {
  switch (k) {
    case record_kind::i64: return "integer";
    case record_kind::f64: return "number";
    case record_kind::f32_matrix: return "float matrix";
    case record_kind::text: return "string";
    case record_kind::rng: return "random generator";
    case record_kind::count: return "list length";
    case record_kind::array: return "number array";
  }
  return "unknown";
}

namespace detail {
template <class T>
concept dense_matrix = requires(T& m) {
  typename T::Scalar;
  m.rows();
  m.cols();
  m.data();
  m.resize(1, 1);
} && std::is_same_v<typename T::Scalar, float>;
/// The element_kind of a packable element type (arithmetic), or 0.
template <class T>
constexpr element_kind element_of() {
  if constexpr (std::is_same_v<T, bool>) return element_kind::b8;
  else if constexpr (std::is_same_v<T, float>) return element_kind::f32;
  else if constexpr (std::is_same_v<T, double>) return element_kind::f64;
  else if constexpr (std::is_integral_v<T> && sizeof(T) <= 8) {
    constexpr bool s = std::is_signed_v<T>;
    if constexpr (sizeof(T) == 1) return s ? element_kind::i8 : element_kind::u8;
    else if constexpr (sizeof(T) == 2) return s ? element_kind::i16 : element_kind::u16;
    else if constexpr (sizeof(T) == 4) return s ? element_kind::i32 : element_kind::u32;
    else return s ? element_kind::i64 : element_kind::u64;
  } else return element_kind{};
}
template <class T>
inline constexpr bool packable = element_of<T>() != element_kind{};
template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};

/// Names grow as "a/b/c"; a scope is entered by ar.scope() and left at its end.
class scoped_names {
 public:
  class guard {
   public:
    explicit guard(scoped_names& n, std::string_view part) : n_(n), size_(n.prefix_.size()) {
      n.prefix_.append(part);
      n.prefix_.push_back('/');
    }
    guard(const guard&) = delete;
    guard& operator=(const guard&) = delete;
    ~guard() { n_.prefix_.resize(size_); }

   private:
    scoped_names& n_;
    std::size_t size_;
  };
  std::string full(std::string_view name) const { return prefix_ + std::string(name); }

 protected:
  std::string prefix_;
};
}  // namespace detail

/// Appends records to a byte string, or streams them to a sink.
class StateWriter : public detail::scoped_names {
 public:
  static constexpr bool saving = true;
  /// Receives the bytes in order.
  using sink_type = std::function<void(const char* data, std::size_t size)>;

  StateWriter() = default;
  /// Streams: bytes go to `sink` whenever about `buffer` have gathered, and at flush().
  explicit StateWriter(sink_type sink, std::size_t buffer = std::size_t{1} << 20)
      : sink_(std::move(sink)), buffer_(buffer) {
    out_.reserve(buffer_);
  }

  /// Records inside the returned guard's lifetime get `name/` in front of their names.
  [[nodiscard]] guard scope(std::string_view name) { return guard(*this, name); }

  template <class T>
  void operator()(std::string_view name, const T& value) {
    put(full(name), value);
  }
  /// A hyperparameter: written like state; StateReader checks it instead of replacing it.
  template <class T>
  void config(std::string_view name, const T& value) {
    put(full(name), value);
  }

  /// The bytes written (in memory), or those not yet handed to the sink.
  const std::string& bytes() const { return out_; }
  std::string take() { return std::move(out_); }
  /// Hands what is buffered to the sink (nothing without one).
  void flush() {
    if (sink_ && !out_.empty()) {
      sink_(out_.data(), out_.size());
      sent_ += out_.size();
      out_.clear();
    }
  }
  /// Appends bytes already encoded as records.
  void append_raw(std::string_view b) { bulk(b.data(), b.size()); }
  /// Bytes written so far, in all.
  std::uint64_t written() const { return sent_ + out_.size(); }

 private:
  template <class T>
  void put(const std::string& name, const T& v) {
    if constexpr (std::is_same_v<T, bool> || std::is_integral_v<T> || std::is_enum_v<T>) {
      head(name, record_kind::i64);
      raw(static_cast<std::int64_t>(v));
    } else if constexpr (std::is_floating_point_v<T>) {
      head(name, record_kind::f64);
      raw(static_cast<double>(v));
    } else if constexpr (std::is_same_v<T, std::string>) {
      head(name, record_kind::text);
      raw(static_cast<std::uint64_t>(v.size()));
      out_.append(v);
    } else if constexpr (std::is_same_v<T, Rng>) {
      head(name, record_kind::rng);
      const auto st = v.state();
      for (auto w : st.words) raw(w);
    } else if constexpr (detail::dense_matrix<T>) {
      head(name, record_kind::f32_matrix);
      raw(static_cast<std::uint64_t>(v.rows()));
      raw(static_cast<std::uint64_t>(v.cols()));
      if constexpr (requires { v.copy_to_host(static_cast<float*>(nullptr)); }) {  // device memory (gpu::thrust)
        std::vector<float> host(static_cast<std::size_t>(v.size()));
        v.copy_to_host(host.data());
        bulk(host.data(), host.size() * sizeof(float));
      } else {
        bulk(v.data(), static_cast<std::size_t>(v.size()) * sizeof(float));
      }
    } else if constexpr (detail::is_vector<T>::value && detail::packable<typename T::value_type>) {
      using E = typename T::value_type;
      head(name, record_kind::array);
      out_.push_back(static_cast<char>(detail::element_of<E>()));
      raw(static_cast<std::uint64_t>(v.size()));
      if constexpr (std::is_same_v<E, bool>) {  // std::vector<bool> has no data(): one byte each
        for (const bool b : v) out_.push_back(static_cast<char>(b ? 1 : 0));
        spill();
      } else {
        bulk(v.data(), v.size() * sizeof(E));
      }
    } else if constexpr (detail::is_vector<T>::value) {
      head(name, record_kind::count);
      raw(static_cast<std::uint64_t>(v.size()));
      for (std::size_t i = 0; i < v.size(); ++i) put(name + "[" + std::to_string(i) + "]", v[i]);
    } else {
      static_assert(sizeof(T) == 0, "fasttrain::io::StateWriter: no record format for this type");
    }
  }
  void head(const std::string& name, record_kind k) {
    spill();
    raw(static_cast<std::uint32_t>(name.size()));
    out_.append(name);
    out_.push_back(static_cast<char>(k));
  }
  template <class T>
  void raw(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  // Large data goes to the sink directly, not through the buffer.
  void bulk(const void* data, std::size_t n) {
    if (sink_ && n >= buffer_ / 4) {
      flush();
      sink_(static_cast<const char*>(data), n);
      sent_ += n;
    } else {
      out_.append(static_cast<const char*>(data), n);
      spill();
    }
  }
  void spill() {
    if (sink_ && out_.size() >= buffer_) flush();
  }
  std::string out_;
  sink_type sink_;
  std::size_t buffer_ = 0;
  std::uint64_t sent_ = 0;
};

/// Reads records written by StateWriter, in order, checking names, types and shapes.
/// `path` and `section` name the source in errors: a data_error for `path` whose problem
/// starts with "section 'model': ..." (a malformed record), or a config_error / shape_error
/// (a well-formed record that does not fit this run).
class StateReader : public detail::scoped_names {
 public:
  static constexpr bool saving = false;

  StateReader(std::string_view bytes, std::string path, std::string section = {})
      : in_(bytes),
        path_(std::move(path)),
        where_(section.empty() ? std::string() : "section '" + section + "': "),
        origin_(section.empty() ? path_ : path_ + ", section '" + section + "'") {}

  /// The file being read.
  const std::string& path() const { return path_; }
  /// Throws a data_error for the file: the data read is impossible (a corrupt or forged file).
  [[noreturn]] void invalid(const std::string& problem) const { throw data_error(path_, where_ + problem); }

  [[nodiscard]] guard scope(std::string_view name) { return guard(*this, name); }

  template <class T>
  void operator()(std::string_view name, T& value) {
    get(full(name), value);
  }
  /// Reads a hyperparameter and checks it equals `value` (a resumed run must be configured
  /// as the run that wrote the checkpoint).
  template <class T>
  void config(std::string_view name, const T& value) {
    T stored = value;
    const std::string n = full(name);
    get(n, stored);
    if (!(stored == value))
      throw config_error(fasttrain::detail::cat("fasttrain: checkpoint ", origin_, " was written with ", n, " = ",
                                                show(stored), " but this run has ", show(value),
                                                "; resume with the same configuration"));
  }

  /// Throws unless every record has been read (a checkpoint from a larger model or recipe).
  void finish() const {
    if (pos_ != in_.size()) {
      std::string next = "?";
      try {
        StateReader peek(in_.substr(pos_), path_);
        next = peek.next_name();
      } catch (const std::exception&) {
      }
      throw config_error(fasttrain::detail::cat("fasttrain: checkpoint ", origin_, " holds more state than this run reads (",
                                                in_.size() - pos_, " bytes left, starting with '", next,
                                                "'): it was written by a different model or recipe"));
    }
  }
  bool done() const { return pos_ == in_.size(); }

 private:
  template <class T>
  static std::string show(const T& v) {
    if constexpr (std::is_same_v<T, std::string>) return "'" + v + "'";
    else if constexpr (std::is_enum_v<T>) return std::to_string(static_cast<std::int64_t>(v));
    else if constexpr (std::is_arithmetic_v<T>) return fasttrain::detail::cat(v);
    else return "(a different value)";
  }

  std::string next_name() {
    const auto len = raw<std::uint32_t>("a record name");
    need(len, "a record name");
    return std::string(in_.substr(pos_, len));
  }

  template <class T>
  void get(const std::string& name, T& v) {
    if constexpr (std::is_same_v<T, bool> || std::is_integral_v<T> || std::is_enum_v<T>) {
      head(name, record_kind::i64);
      const auto x = raw<std::int64_t>(name);
      if constexpr (std::is_same_v<T, bool>) {
        if (x != 0 && x != 1) bad(name, fasttrain::detail::cat("holds ", x, " where a boolean (0 or 1) belongs"));
        v = x != 0;
      } else if constexpr (std::is_enum_v<T>) {
        using U = std::underlying_type_t<T>;
        in_range<U>(name, x);
        v = static_cast<T>(static_cast<U>(x));
      } else {
        in_range<T>(name, x);
        v = static_cast<T>(x);
      }
    } else if constexpr (std::is_floating_point_v<T>) {
      head(name, record_kind::f64);
      const double x = raw<double>(name);
      if (std::isfinite(x) && std::abs(x) > static_cast<double>(std::numeric_limits<T>::max()))
        bad(name, fasttrain::detail::cat("holds ", x, ", out of range for its type"));
      v = static_cast<T>(x);
    } else if constexpr (std::is_same_v<T, std::string>) {
      head(name, record_kind::text);
      const auto len = raw<std::uint64_t>(name);
      need(len, name);
      v.assign(in_.substr(pos_, static_cast<std::size_t>(len)));
      pos_ += static_cast<std::size_t>(len);
    } else if constexpr (std::is_same_v<T, Rng>) {
      head(name, record_kind::rng);
      Rng::state_type st{};
      for (auto& w : st.words) w = raw<std::uint64_t>(name);
      v.set_state(st);
    } else if constexpr (detail::dense_matrix<T>) {
      head(name, record_kind::f32_matrix);
      const auto rows = raw<std::uint64_t>(name), cols = raw<std::uint64_t>(name);
      if (rows > (std::uint64_t{1} << 40) || cols > (std::uint64_t{1} << 40))
        bad(name, fasttrain::detail::cat("claims an impossible ", rows, "x", cols, " matrix"));
      const std::uint64_t bytes = rows * cols * sizeof(float);
      if (cols != 0 && bytes / cols / sizeof(float) != rows)
        bad(name, fasttrain::detail::cat("claims an impossible ", rows, "x", cols, " matrix"));
      need(bytes, name);
      if (v.size() != 0 && (static_cast<std::uint64_t>(v.rows()) != rows || static_cast<std::uint64_t>(v.cols()) != cols))
        throw shape_error(fasttrain::detail::cat("fasttrain: checkpoint ", origin_, " holds ", name, " as ", rows, "x",
                                                 cols, " but this run's is ", v.rows(), "x", v.cols(),
                                                 ": it was written by a different model"));
      if constexpr (requires { v.assign_from_host(static_cast<const float*>(nullptr), 0, 0); }) {  // device memory
        std::vector<float> host(static_cast<std::size_t>(rows * cols));
        if (bytes) std::memcpy(host.data(), in_.data() + pos_, static_cast<std::size_t>(bytes));
        v.assign_from_host(host.data(), static_cast<std::int64_t>(rows), static_cast<std::int64_t>(cols));
      } else {
        v.resize(static_cast<Eigen::Index>(rows), static_cast<Eigen::Index>(cols));
        if (bytes) std::memcpy(v.data(), in_.data() + pos_, static_cast<std::size_t>(bytes));
      }
      pos_ += static_cast<std::size_t>(bytes);
    } else if constexpr (detail::is_vector<T>::value && detail::packable<typename T::value_type>) {
      using E = typename T::value_type;
      head(name, record_kind::array);
      need(1, name);
      const auto k = static_cast<element_kind>(static_cast<unsigned char>(in_[pos_++]));
      if (k != detail::element_of<E>())
        bad(name, fasttrain::detail::cat("is stored as an array of ", element_name(k), " (element type ",
                                         static_cast<int>(k), ") but is an array of ",
                                         element_name(detail::element_of<E>())));
      const auto n = raw<std::uint64_t>(name);
      constexpr std::size_t width = std::is_same_v<E, bool> ? 1 : sizeof(E);
      if (n > (in_.size() - pos_) / width)
        bad(name, fasttrain::detail::cat("claims ", n, " elements, more than the data holds"));
      v.resize(static_cast<std::size_t>(n));
      if constexpr (std::is_same_v<E, bool>) {
        for (std::size_t i = 0; i < v.size(); ++i) {
          const auto b = static_cast<unsigned char>(in_[pos_ + i]);
          if (b > 1) bad(name, fasttrain::detail::cat("holds ", int(b), " at element ", i, " where a boolean (0 or 1) belongs"));
          v[i] = b != 0;
        }
      } else if (n) {
        std::memcpy(v.data(), in_.data() + pos_, static_cast<std::size_t>(n) * width);
      }
      pos_ += static_cast<std::size_t>(n) * width;
    } else if constexpr (detail::is_vector<T>::value) {
      head(name, record_kind::count);
      const auto n = raw<std::uint64_t>(name);
      // Each element takes at least a record header; a count beyond what is left is corrupt.
      if (n > (in_.size() - pos_) / 5) bad(name, fasttrain::detail::cat("claims ", n, " elements, more than the data holds"));
      v.resize(static_cast<std::size_t>(n));
      for (std::size_t i = 0; i < v.size(); ++i) get(name + "[" + std::to_string(i) + "]", v[i]);
    } else {
      static_assert(sizeof(T) == 0, "fasttrain::io::StateReader: no record format for this type");
    }
  }

  template <class I>
  void in_range(const std::string& name, std::int64_t x) const {
    if (x < static_cast<std::int64_t>(std::numeric_limits<I>::min()) ||
        (x > 0 && static_cast<std::uint64_t>(x) > static_cast<std::uint64_t>(std::numeric_limits<I>::max())))
      bad(name, fasttrain::detail::cat("holds ", x, ", out of range for its type"));
  }

  void head(const std::string& name, record_kind want) {
    if (pos_ == in_.size())
      throw config_error(fasttrain::detail::cat("fasttrain: checkpoint ", origin_, " ends where this run expects ", name,
                                                ": it was written by a different (smaller) model or recipe"));
    const auto len = raw<std::uint32_t>(name);
    need(len, name);
    const std::string_view got = in_.substr(pos_, len);
    pos_ += len;
    if (got != name)
      throw config_error(fasttrain::detail::cat("fasttrain: checkpoint ", origin_, " holds '", got, "' where this run expects '",
                                                name, "': it was written by a different model or recipe"));
    need(1, name);
    const auto k = static_cast<record_kind>(static_cast<unsigned char>(in_[pos_++]));
    if (k != want)
      bad(name, fasttrain::detail::cat("is stored as a ", kind_name(k), " (type ", static_cast<int>(k), ") but is a ",
                                       kind_name(want)));
  }
  template <class T>
  T raw(const std::string& name) {
    need(sizeof(T), name);
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  void need(std::uint64_t n, const std::string& name) const {
    if (n > in_.size() - pos_)
      invalid(fasttrain::detail::cat("truncated inside record '", name, "' (needs ", n, " more bytes, ",
                                     in_.size() - pos_, " left)"));
  }
  [[noreturn]] void bad(const std::string& name, const std::string& what) const {
    invalid("record '" + name + "' " + what);
  }

  std::string_view in_;
  std::size_t pos_ = 0;
  std::string path_, where_, origin_;
};

/// Saves or loads `x`'s state if it has a state(ar) member; does nothing otherwise.
template <class Archive, class T>
void visit_state(Archive& ar, T& x) {
  if constexpr (requires { x.state(ar); }) x.state(ar);
}

}  // namespace fasttrain::io
