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
#include <cstdio>
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
  /// With num_classes = 0, a label >= this is refused (a stray 1e9 would otherwise make 1e9
  /// classes, and a 1e9-row output layer); give num_classes to allow more.
  int max_inferred_classes = 65536;
};

namespace detail {

// Echoes a field in an error message, shortened when long; bytes outside printable ASCII
// (control bytes, and anything >= 0x80: a numeric field has no business holding UTF-8) as
// \xNN, so the message stays one line of plain text whatever the file holds.
inline std::string quote_field(std::string_view f) {
  constexpr std::size_t max = 40;
  std::string s = "'";
  for (const char c : f.substr(0, max)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", u);
      s += buf;
    } else {
      s += c;
    }
  }
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
  if (!f.empty() && f.front() == '+') {
    f.remove_prefix(1);
    if (!f.empty() && (f.front() == '-' || f.front() == '+')) return false;  // "+-1" is not a number
  }
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
  std::size_t got = 0, chunk = std::size_t{64} << 10;  // grows to 64 MiB reads on big files
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
  fasttrain::detail::require(opt.max_inferred_classes >= 1, "data::read_csv: max_inferred_classes must be >= 1, got ",
                             opt.max_inferred_classes);
  fasttrain::detail::require(opt.delimiter != '\n' && opt.delimiter != '\r' && opt.delimiter != '\0',
                             "data::read_csv: the delimiter cannot be a line break or NUL");

  const std::string text = detail::read_text(path);
  std::string_view rest(text);
  if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);  // UTF-8 byte-order mark
  if (rest.empty()) throw data_error(path, "is empty, expected CSV rows");

  // Upper bound on the number of rows (lines), one of the two bounds on the feature matrix.
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
  std::int64_t capacity = 0;  // columns allocated in ds.features
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
                                   "(delimiter ", detail::quote_field(std::string_view(&opt.delimiter, 1)), ")"));
      label_col = opt.label_column < 0 ? nfields + opt.label_column : opt.label_column;
      if (label_col < 0 || label_col >= nfields)
        throw data_error(path, cat("label_column ", opt.label_column, " is out of range: line ", line_no, " has ",
                                   nfields, " fields"));
      // The matrix is allocated once for the rows that can still come: a valid row has
      // nfields non-empty fields and nfields - 1 delimiters, rows are separated by '\n', so
      // k rows take at least 2 k nfields - 1 bytes. Bounding by lines alone would let a wide
      // first row followed by many blank lines allocate width x lines floats (a 12 KB file,
      // 64 MB); this bound keeps the matrix within ~2x the file's size.
      const auto left = static_cast<std::int64_t>(text.data() + text.size() - line.data());
      capacity = std::max<std::int64_t>(1, std::min(max_rows, (left + 1) / (2 * nfields)));
      ds.features.resize(static_cast<Eigen::Index>(nfields - 1), static_cast<Eigen::Index>(capacity));
      ds.labels.reserve(static_cast<std::size_t>(capacity));
    }
    if (rows == capacity) {  // only a row that will turn out invalid can get here; give it room
      capacity = std::min(max_rows, std::max(rows + 1, 2 * capacity));
      ds.features.conservativeResize(Eigen::NoChange, static_cast<Eigen::Index>(capacity));
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
        if (!ok || !(v >= 0) || v != std::floor(v))
          throw data_error(path, cat("line ", line_no, ", column ", field + 1, ": label ", detail::quote_field(f),
                                     " is not a non-negative integer"));
        // num_classes = max label + 1 must still be an int.
        if (v >= static_cast<double>(std::numeric_limits<std::int32_t>::max()))
          throw data_error(path, cat("line ", line_no, ", column ", field + 1, ": label ", detail::quote_field(f),
                                     " is too large (labels must be below ", std::numeric_limits<std::int32_t>::max(),
                                     ")"));
        const auto y = static_cast<std::int32_t>(v);
        if (opt.num_classes == 0 && y >= opt.max_inferred_classes)
          throw data_error(path, cat("line ", line_no, ", column ", field + 1, ": label ", y, " would make ",
                                     static_cast<std::int64_t>(y) + 1, " classes, more than read_csv infers (",
                                     opt.max_inferred_classes,
                                     ", CsvOptions::max_inferred_classes); give num_classes if the file really has "
                                     "that many"));
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
  if (rows != capacity) ds.features.conservativeResize(Eigen::NoChange, static_cast<Eigen::Index>(rows));
  ds.sample_shape = Shape(nfields - 1);
  ds.num_classes = opt.num_classes > 0 ? opt.num_classes : max_label + 1;
  return ds;
}

}  // namespace fasttrain::data
