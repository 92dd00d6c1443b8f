// fasttrain/data/csv.hpp -- reader for numeric CSV files: one sample per line, one label column.
//
//   data::Dataset ds = data::read_csv("train.csv", {.label_column = 0, .has_header = true});
//   // features: every other column, as floats; sample_shape {features}; labels 0..num_classes-1
//
// The file may be plain or gzip-compressed. CRLF line endings, a trailing newline, a UTF-8
// byte-order mark, blank lines and spaces around fields are accepted. Anything else that is
// wrong -- a ragged row, a field that is not a finite number, a label that is not a
// non-negative integer or is out of range -- is reported as data_error(path, "line L[, column C]: ...")
// with 1-based line and column numbers.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "fasttrain/core/error.hpp"
#include "fasttrain/data/dataset.hpp"
#include "fasttrain/data/idx.hpp"

namespace fasttrain::data {

/// How read_csv splits a file into features and label.
struct CsvOptions {
  int label_column = 0;     ///< which field is the label; negative counts from the end: -1 = last
  bool has_header = false;  ///< skip the first line
  char delimiter = ',';
  int num_classes = 0;      ///< 0 = infer as max label + 1; otherwise labels must be < num_classes
};

namespace detail {

// Echoes a field in an error message, shortened when long.
inline std::string quote_field(std::string_view f) {
  constexpr std::size_t max = 40;
  std::string s = "'";
  s.append(f.substr(0, max));
  if (f.size() > max) s += "...";
  return s + "'";
}

inline std::string_view trim_field(std::string_view f, char delimiter) {
  auto blank = [delimiter](char c) { return (c == ' ' || c == '\t') && c != delimiter; };
  while (!f.empty() && blank(f.front())) f.remove_prefix(1);
  while (!f.empty() && blank(f.back())) f.remove_suffix(1);
  return f;
}

// Parses the whole of `f` as a double-or-float; false when it is not entirely a number.
template <class T>
bool parse_number(std::string_view f, T& out, bool& out_of_range) {
  out_of_range = false;
  if (!f.empty() && f.front() == '+') f.remove_prefix(1);
  if (f.empty()) return false;
  const char* end = f.data() + f.size();
  const auto [p, ec] = std::from_chars(f.data(), end, out, std::chars_format::general);
  if (ec == std::errc::result_out_of_range && p == end) {
    out_of_range = true;
    return false;
  }
  return ec == std::errc{} && p == end;
}

inline std::string read_text(const std::string& path) {
  GzReader f(path);
  std::string text;
  std::size_t got = 0, chunk = std::size_t{1} << 20;
  for (;;) {
    text.resize(got + chunk);
    const std::size_t r = f.read(text.data() + got, chunk);
    got += r;
    if (r < chunk) break;
    if (chunk < (std::size_t{64} << 20)) chunk *= 2;
  }
  text.resize(got);
  return text;
}

}  // namespace detail

/// Reads a numeric CSV file: one sample per non-blank line, the field at
/// `opt.label_column` is the integer class label, every other field a feature.
/// Throws data_error(path, problem) naming the line (and column) at fault, config_error
/// for impossible options.
inline Dataset read_csv(const std::string& path, CsvOptions opt = {}) {
  using fasttrain::detail::cat;
  fasttrain::detail::require(opt.num_classes >= 0, "data::read_csv: num_classes must be >= 0 (0 = infer), got ",
                             opt.num_classes);
  fasttrain::detail::require(opt.delimiter != '\n' && opt.delimiter != '\r' && opt.delimiter != '\0',
                             "data::read_csv: the delimiter cannot be a line break or NUL");

  const std::string text = detail::read_text(path);
  std::string_view rest(text);
  if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);  // UTF-8 byte-order mark
  if (rest.empty()) throw data_error(path, "is empty, expected CSV rows");

  // Upper bound on the number of rows, to allocate the feature matrix once.
  std::int64_t max_rows = 0;
  for (const char* p = rest.data(); (p = static_cast<const char*>(
                                         std::memchr(p, '\n', static_cast<std::size_t>(rest.data() + rest.size() - p))));
       ++p)
    ++max_rows;
  if (rest.back() != '\n') ++max_rows;
  if (opt.has_header) --max_rows;

  Dataset ds;
  ds.name = path;
  std::int64_t nfields = -1;  // fields per row, fixed by the first data row
  std::int64_t label_col = 0;
  std::int64_t rows = 0;
  std::int64_t line_no = 0;
  std::int32_t max_label = -1;

  while (!rest.empty()) {
    // Next line, without its '\n' and a trailing '\r'.
    const std::size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && opt.has_header) continue;
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank line

    if (nfields < 0) {  // first data row: fix the layout and allocate
      nfields = 1;
      for (char c : line) nfields += c == opt.delimiter;
      if (nfields < 2)
        throw data_error(path, cat("line ", line_no, " has 1 field; a row needs a label and at least one feature ",
                                   "(delimiter '", std::string(1, opt.delimiter), "')"));
      label_col = opt.label_column < 0 ? nfields + opt.label_column : opt.label_column;
      if (label_col < 0 || label_col >= nfields)
        throw data_error(path, cat("label_column ", opt.label_column, " is out of range: line ", line_no, " has ",
                                   nfields, " fields"));
      ds.features.resize(static_cast<Eigen::Index>(nfields - 1), static_cast<Eigen::Index>(max_rows));
      ds.labels.reserve(static_cast<std::size_t>(max_rows));
    }

    float* col = ds.features.data() + rows * (nfields - 1);
    std::int64_t field = 0;
    std::size_t start = 0;
    for (;;) {
      const std::size_t d = line.find(opt.delimiter, start);
      if (field >= nfields)  // more fields than the first row: ragged
        throw data_error(path, cat("line ", line_no, " has ", 1 + std::count(line.begin(), line.end(), opt.delimiter),
                                   " fields, expected ", nfields));
      const std::string_view raw = line.substr(start, d == std::string_view::npos ? std::string_view::npos : d - start);
      const std::string_view f = detail::trim_field(raw, opt.delimiter);
      bool out_of_range = false;
      if (field == label_col) {
        double v = 0;
        const bool ok = detail::parse_number(f, v, out_of_range);
        if (!ok || !(v >= 0) || v != std::floor(v) || v > std::numeric_limits<std::int32_t>::max())
          throw data_error(path, cat("line ", line_no, ", column ", field + 1, ": label ", detail::quote_field(f),
                                     " is not a non-negative integer"));
        const auto y = static_cast<std::int32_t>(v);
        if (opt.num_classes > 0 && y >= opt.num_classes)
          throw data_error(path, cat("line ", line_no, ", column ", field + 1, ": label ", y, " is out of range [0, ",
                                     opt.num_classes, ")"));
        ds.labels.push_back(y);
        if (y > max_label) max_label = y;
      } else {
        float v = 0;
        if (!detail::parse_number(f, v, out_of_range))
          throw data_error(path, cat("line ", line_no, ", column ", field + 1, ": ", detail::quote_field(f),
                                     out_of_range ? " is out of range for a float" : " is not a number"));
        if (!std::isfinite(v))
          throw data_error(path, cat("line ", line_no, ", column ", field + 1, ": ", detail::quote_field(f),
                                     " is not a finite number"));
        *col++ = v;
      }
      ++field;
      if (d == std::string_view::npos) break;
      start = d + 1;
    }
    if (field != nfields)
      throw data_error(path, cat("line ", line_no, " has ", field, " fields, expected ", nfields));
    ++rows;
  }

  if (rows == 0)
    throw data_error(path, opt.has_header ? "has a header but no data rows" : "has no data rows");
  if (rows != max_rows) ds.features.conservativeResize(Eigen::NoChange, static_cast<Eigen::Index>(rows));
  ds.sample_shape = Shape(nfields - 1);
  ds.num_classes = opt.num_classes > 0 ? opt.num_classes : max_label + 1;
  return ds;
}

}  // namespace fasttrain::data
