// fasttrain/core/error.hpp -- the exception types fasttrain throws.
//
// Every error names what is wrong (the file, the hyperparameter, the step) so a user
// can act on the message alone. All derive from std::runtime_error or
// std::invalid_argument, so a plain `catch (const std::exception&)` sees them.
#pragma once

#include <cstdio>
#include <stdexcept>
#include <string>
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
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string s;
  auto add = [&s](const auto& p) {
    using T = std::decay_t<decltype(p)>;
    if constexpr (std::is_floating_point_v<T>) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6g", static_cast<double>(p));
      s += buf;
    } else if constexpr (std::is_arithmetic_v<T>) {
      s += std::to_string(p);
    } else {
      s += p;
    }
  };
  (add(parts), ...);
  return s;
}

/// Throws config_error("<who>: <what>") unless `ok`.
template <class... Parts>
void require(bool ok, const Parts&... parts) {
  if (!ok) throw config_error(cat(parts...));
}
}  // namespace detail
}  // namespace fasttrain
