// fasttrain/core/error.hpp -- the exception types fasttrain throws.
//
// Every error names what is wrong (the file, the hyperparameter, the step) so a user
// can act on the message alone. All derive from std::runtime_error or
// std::invalid_argument, so a plain `catch (const std::exception&)` sees them.
#pragma once

#include <cstdio>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>

namespace fasttrain {

/// A file could not be read or is not what it claims to be (bad magic, truncated,
/// label out of range, ragged CSV row, ...). `what()` starts with the file path.
class data_error : public std::runtime_error {
 public:
  data_error(const std::string& path, const std::string& problem)
      : std::runtime_error(path + ": " + problem), path_(path) {}
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

/// A hyperparameter or argument outside its valid range; `what()` names the component,
/// the parameter and the value.
class config_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// Training produced a non-finite loss or gradient.
class divergence_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A tensor arrived with a shape the layer cannot take (only shapes that are not
/// known at compile time are checked at run time; static ones are static_asserts).
class shape_error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

namespace detail {
/// One piece of an error message: text, or a number formatted on the spot. cat() and
/// require() turn their arguments into these, so that the formatting itself is one
/// non-template function: an error message costs its call site almost no compiled code.
class text_part {
 public:
  text_part(std::string_view s) : text_(s) {}
  text_part(const char* s) : text_(s) {}
  text_part(const std::string& s) : text_(s) {}
  text_part(char c) : text_(buf_, 1) { buf_[0] = c; }
  template <class T>
    requires(std::is_arithmetic_v<T> && !std::is_same_v<T, char>)
  text_part(T v) {
    int n = 0;
    if constexpr (std::is_floating_point_v<T>)
      n = std::snprintf(buf_, sizeof buf_, "%.6g", static_cast<double>(v));
    else if constexpr (std::is_same_v<T, bool>)
      n = std::snprintf(buf_, sizeof buf_, "%d", static_cast<int>(v));
    else if constexpr (std::is_signed_v<T>)
      n = std::snprintf(buf_, sizeof buf_, "%lld", static_cast<long long>(v));
    else
      n = std::snprintf(buf_, sizeof buf_, "%llu", static_cast<unsigned long long>(v));
    text_ = std::string_view(buf_, static_cast<std::size_t>(n));
  }
  text_part(const text_part&) = delete;
  text_part& operator=(const text_part&) = delete;
  std::string_view text() const { return text_; }

 private:
  char buf_[32];
  std::string_view text_;
};

inline std::string cat_parts(std::initializer_list<std::reference_wrapper<const text_part>> parts) {
  std::size_t n = 0;
  for (const text_part& p : parts) n += p.text().size();
  std::string s;
  s.reserve(n);
  for (const text_part& p : parts) s += p.text();
  return s;
}

/// The concatenation of the parts: strings as they are, integers in decimal, floating-point
/// numbers as %.6g.
template <class... Parts>
std::string cat(const Parts&... parts) {
  return cat_parts({std::cref(static_cast<const text_part&>(text_part(parts)))...});
}

[[noreturn]] inline void throw_config_error(std::initializer_list<std::reference_wrapper<const text_part>> parts) {
  throw config_error(cat_parts(parts));
}

/// Throws config_error("<who>: <what>") unless `ok`.
template <class... Parts>
void require(bool ok, const Parts&... parts) {
  if (!ok) [[unlikely]]
    throw_config_error({std::cref(static_cast<const text_part&>(text_part(parts)))...});
}
}  // namespace detail
}  // namespace fasttrain
